"""Relative paths in a config file are read against the file's folder; --set ones against
the working directory (docs/configuration.md, "Paths in a config file")."""

import os
from pathlib import Path

import pytest

from xalign.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A config folder and a different working directory."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def test_corpus_spec_string_is_read_against_the_config_folder(elsewhere):
    path = elsewhere / "cfg" / "run.yaml"
    path.write_text("data: {corpus: 'corpora/train.{src}-{tgt}.{lang}'}\n")
    cfg = load_config(path)
    assert cfg.data.corpus == str(elsewhere / "cfg" / "corpora" / "train.{src}-{tgt}.{lang}")


def test_corpus_mapping_and_two_file_entries_are_read_against_the_config_folder(elsewhere):
    path = elsewhere / "cfg" / "run.yaml"
    path.write_text(
        "data:\n  languages: [de, fr, el]\n  corpus:\n"
        "    de: {src: ../d/deu.txt, tgt: ../d/eng.txt}\n"
        "    fr: fr-en.tsv\n"
        "    el: hf:some/dataset:{src}-{tgt}\n"
    )
    corpus = load_config(path).data.corpus
    assert corpus["de"] == {
        "src": str(elsewhere / "d" / "deu.txt"),
        "tgt": str(elsewhere / "d" / "eng.txt"),
    }
    assert corpus["fr"] == str(elsewhere / "cfg" / "fr-en.tsv")
    assert corpus["el"] == "hf:some/dataset:{src}-{tgt}"  # not a file


@pytest.mark.parametrize("value", ["demo", "/abs/corpus.{src}-{tgt}.tsv", "~/corpus.tsv"])
def test_names_absolute_and_home_paths_are_kept(elsewhere, value):
    path = elsewhere / "cfg" / "run.yaml"
    path.write_text(f"data: {{corpus: '{value}'}}\n")
    assert load_config(path).data.corpus == value


def test_links_template_and_mapping_are_read_against_the_config_folder(elsewhere):
    path = elsewhere / "cfg" / "run.yaml"
    path.write_text("data: {links: 'links/{src}-{tgt}.{symmetrization}.txt'}\n")
    assert load_config(path).data.links == str(
        elsewhere / "cfg" / "links" / "{src}-{tgt}.{symmetrization}.txt"
    )
    path.write_text("data: {links: {de-en: a.txt, fr: /abs/b.txt}}\n")
    assert load_config(path).data.links == {
        "de-en": str(elsewhere / "cfg" / "a.txt"),
        "fr": "/abs/b.txt",
    }
    path.write_text("data: {links: self}\n")
    assert load_config(path).data.links == "self"


def test_extended_file_paths_are_read_against_that_files_folder(elsewhere):
    (elsewhere / "base.yaml").write_text("data: {corpus: base.tsv, links: 'l/{src}.txt'}\n")
    child = elsewhere / "cfg" / "child.yaml"
    child.write_text("extends: ../base.yaml\ndata: {links: 'mine/{src}.txt'}\n")
    cfg = load_config(child)
    assert cfg.data.corpus == str(elsewhere / "base.tsv")
    assert cfg.data.links == str(elsewhere / "cfg" / "mine" / "{src}.txt")


def test_set_values_stay_relative_to_the_working_directory(elsewhere):
    path = elsewhere / "cfg" / "run.yaml"
    path.write_text("data: {corpus: file.tsv}\n")
    cfg = load_config(path, ["data.corpus=here.tsv", "data.links=l/{src}.txt"])
    assert cfg.data.corpus == "here.tsv" and cfg.data.links == "l/{src}.txt"


def test_fingerprint_does_not_depend_on_the_working_directory(elsewhere, monkeypatch):
    path = elsewhere / "cfg" / "run.yaml"
    path.write_text("data: {corpus: file.tsv}\n")
    first = load_config(path).fingerprint()
    monkeypatch.chdir(elsewhere / "cfg")
    assert load_config("run.yaml").fingerprint() == first


def test_flores_config_names_the_shared_data_from_any_folder(elsewhere):
    corpus = load_config(ROOT / "configs" / "flores.yaml").data.corpus
    shared = os.path.normpath(ROOT.parent / "shared" / "data" / "parallel" / "flores200_devtest")
    assert corpus["de"] == {
        "src": f"{shared}/deu_Latn.devtest",
        "tgt": f"{shared}/eng_Latn.devtest",
    }
    assert sorted(corpus) == ["bg", "de", "el", "es", "fr"]
    if Path(shared).is_dir():  # the shared data is there on a full checkout
        for files in corpus.values():
            assert Path(files["src"]).is_file() and Path(files["tgt"]).is_file()


def test_a_runs_saved_config_keeps_paths_as_the_run_read_them(elsewhere):
    """--resume reads checkpoints/step-N/config.yaml: written before paths were anchored, its
    relative paths were relative to the working directory, and stay so."""
    saved = elsewhere / "cfg" / "config.yaml"
    saved.write_text("data: {corpus: ../shared/data/x.tsv}\n")
    cfg = load_config(saved, paths_from_file=False)
    assert cfg.data.corpus == "../shared/data/x.tsv"
    fresh = load_config(saved)  # what a run started now reads and saves: absolute
    assert fresh.data.corpus == str(elsewhere / "shared" / "data" / "x.tsv")
    saved.write_text(f"data: {{corpus: {fresh.data.corpus}}}\n")
    assert load_config(saved, paths_from_file=False).fingerprint() == fresh.fingerprint()
