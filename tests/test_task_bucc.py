"""The ``bucc`` task: margin scores by hand, threshold choice, data files, runs end to end."""

from __future__ import annotations

import json
from fractions import Fraction as Fr
from pathlib import Path

import numpy as np
import pytest
import torch
import xalign_bucc
from typer.testing import CliRunner
from xalign_bucc import BuccConfig, BuccTask
from xalign_bucc.build import main as build_main
from xalign_bucc.build import write_bucc_set
from xalign_bucc.data import BuccData, find_local, from_hub_rows, load_bucc
from xalign_bucc.mining import (
    margin_scores,
    mine,
    optimise_threshold,
    prf,
    source_counts,
)

from xalign import TaskContext
from xalign.alignment import GoldFileNotFoundError, GoldFormatError
from xalign.cli import app
from xalign.evaluation import DataUnavailableError

# ---------------------------------------------------------------- margin by hand
#
# Unit vectors with rational coordinates, so every cosine is an exact fraction:
#   x0 = (1, 0)         x1 = (12/13, 5/13)    x2 = (4/5, 3/5)
#   y0 = (24/25, 7/25)  y1 = (15/17, 8/17)    y2 = (21/29, 20/29)
# cos(x_i, y_j) = x_i . y_j:
#            y0          y1          y2
#   x0    24/25       15/17       21/29       (0.96000  0.88235  0.72414)
#   x1   323/325     220/221     352/377      (0.99385  0.99548  0.93369)
#   x2   117/125      84/85      144/145      (0.93600  0.98824  0.99310)
# k = 2. Nearest targets: x0 -> {y0, y1}, x1 -> {y1, y0}, x2 -> {y2, y1};
# nearest sources: y0 -> {x1, x0}, y1 -> {x1, x2}, y2 -> {x2, x1}.
# Neighbourhood means (Σ/k): x: 783/850, 10991/11050, 2442/2465;
#                            y: 127/130, 1096/1105, 1816/1885   (y1, a hub, is highest).
# margin(x, y) = cos / ((mean_x + mean_y) / 2):
#   x0: y0 10608/10487 = 1.011538, y1 19500/21139 = 0.922466        -> y0
#   x1: y1 22000/21951 = 1.002232, y0 10982/10893 = 1.008170        -> y0 (cosine says y1!)
#   x2: y2 31824/31309 = 1.016449, y1 31668/31765 = 0.996946        -> y2
#   y0: x1 1.008170, x0 1.011538 -> x0;  y1: x1 1.002232, x2 0.996946 -> x1;
#   y2: x2 1.016449, x1 598400/627459 = 0.953688 -> x2
# max retrieval, by decreasing margin: (x2,y2) 1.016449, (x0,y0) 1.011538, then (x1,y0)
# 1.008170 is skipped (y0 taken) and the backward pair (x1,y1) 1.002232 is kept.

X = [(Fr(1), Fr(0)), (Fr(12, 13), Fr(5, 13)), (Fr(4, 5), Fr(3, 5))]
Y = [(Fr(24, 25), Fr(7, 25)), (Fr(15, 17), Fr(8, 17)), (Fr(21, 29), Fr(20, 29))]
MEANS_X = [Fr(783, 850), Fr(10991, 11050), Fr(2442, 2465)]
MEANS_Y = [Fr(127, 130), Fr(1096, 1105), Fr(1816, 1885)]
MARGIN = {
    (0, 0): Fr(10608, 10487),
    (0, 1): Fr(19500, 21139),
    (1, 1): Fr(22000, 21951),
    (1, 0): Fr(10982, 10893),
    (2, 2): Fr(31824, 31309),
    (2, 1): Fr(31668, 31765),
    (1, 2): Fr(598400, 627459),
}


def _tensor(vectors: list[tuple[Fr, Fr]], scale: float = 1.0) -> torch.Tensor:
    return torch.tensor(
        [[float(a) * scale, float(b) * scale] for a, b in vectors], dtype=torch.float64
    )


def test_hand_computed_fractions_are_consistent() -> None:
    cos = [[a[0] * b[0] + a[1] * b[1] for b in Y] for a in X]
    assert cos[1] == [Fr(323, 325), Fr(220, 221), Fr(352, 377)]
    assert MEANS_X[1] == (cos[1][1] + cos[1][0]) / 2 and MEANS_Y[1] == (cos[1][1] + cos[2][1]) / 2
    for (i, j), value in MARGIN.items():
        assert value == cos[i][j] / ((MEANS_X[i] + MEANS_Y[j]) / 2)


def test_margin_scores_match_the_hand_computation() -> None:
    # Scaled vectors: the margin uses cosine, so lengths do not matter.
    scores = margin_scores(_tensor(X, 3.0), _tensor(Y, 0.5), k=2)
    assert scores.src_mean.tolist() == pytest.approx([float(m) for m in MEANS_X], abs=1e-12)
    assert scores.tgt_mean.tolist() == pytest.approx([float(m) for m in MEANS_Y], abs=1e-12)
    assert scores.fwd_idx.tolist() == [[0, 1], [1, 0], [2, 1]]
    assert scores.bwd_idx.tolist() == [[1, 0], [1, 2], [2, 1]]
    for i, row in enumerate(scores.fwd_idx.tolist()):
        for c, j in enumerate(row):
            assert scores.fwd_score[i, c].item() == pytest.approx(float(MARGIN[i, j]), abs=1e-12)
    for j, row in enumerate(scores.bwd_idx.tolist()):
        for c, i in enumerate(row):
            assert scores.bwd_score[j, c].item() == pytest.approx(float(MARGIN[i, j]), abs=1e-12)


def _dense_ratio_margin(sim: np.ndarray, k: int) -> np.ndarray:
    """An independent oracle: the ratio margin of every cell of a cosine matrix."""
    src = np.sort(sim, axis=1)[:, -k:].mean(axis=1)
    tgt = np.sort(sim.T, axis=1)[:, -k:].mean(axis=1)
    return sim / ((src[:, None] + tgt[None, :]) / 2)


def test_mining_by_retrieval_mode() -> None:
    x, y = _tensor(X), _tensor(Y)

    def pairs(mode: str) -> list[tuple[int, int]]:
        return [(c.src, c.tgt) for c in mine(x, y, k=2, retrieval=mode)]

    assert pairs("max") == [(2, 2), (0, 0), (1, 1)]
    assert pairs("forward") == [(2, 2), (0, 0), (1, 0)]  # x1 -> y0: the hub effect
    assert pairs("backward") == [(2, 2), (0, 0), (1, 1)]
    assert pairs("intersect") == [(2, 2), (0, 0)]
    assert [c.score for c in mine(x, y, k=2)] == pytest.approx(
        [float(MARGIN[2, 2]), float(MARGIN[0, 0]), float(MARGIN[1, 1])], abs=1e-12
    )
    # Plain cosine would pair x1 with the hub y1 and x2 too: argmax per row = [0, 1, 2]... and
    # the dense ratio margin (Artetxe & Schwenk eq. 2-3 over the whole matrix) agrees with ours
    # on the kNN candidates.
    dense = _dense_ratio_margin(np.array([[float(a * c + b * d) for c, d in Y] for a, b in X]), k=2)
    assert dense[1, 0] == pytest.approx(float(MARGIN[1, 0]))


def test_threshold_maximises_f1_between_distinct_scores() -> None:
    gold = {("a", "A"), ("b", "B"), ("d", "D"), ("e", "E")}
    scored = {
        ("a", "A"): 3.0,
        ("b", "B"): 2.0,
        ("g", "G"): 2.0,
        ("c", "X"): 1.5,
        ("d", "D"): 1.0,
        ("f", "Y"): 0.5,
    }
    # cut after 3.0: F1 2*1/(1+4) = .4; after 2.0 (b and g tie): 2*2/(3+4) = .571;
    # after 1.5: 4/8 = .5; after 1.0: 2*3/(5+4) = .667 (best); after 0.5: 6/10 = .6
    threshold, f1 = optimise_threshold(scored, gold)
    assert threshold == 0.75 and f1 == pytest.approx(200 / 3)
    predicted = {p for p, s in scored.items() if s >= threshold}
    assert prf(predicted, gold)["f1"] == pytest.approx(f1)
    assert prf(predicted, gold)["precision"] == pytest.approx(60.0)
    assert prf(predicted, gold)["recall"] == pytest.approx(75.0)
    # Best cut after the last candidate: the threshold is its score.
    assert optimise_threshold({("a", "A"): 2.0, ("d", "D"): 1.0}, gold) == (
        1.0,
        pytest.approx(200 / 3),
    )
    assert optimise_threshold({("x", "X"): 2.0}, gold) == (0.0, 0.0)  # nothing correct


def test_source_counts_give_corpus_f1() -> None:
    gold = {("a", "A"), ("b", "B")}
    predicted = {("a", "A"), ("c", "B")}
    matched, total = source_counts(["a", "b", "c", "z"], predicted, gold)
    assert (matched, total) == ([2, 0, 0, 0], [2, 1, 1, 0])
    assert sum(matched) / sum(total) * 100 == pytest.approx(prf(predicted, gold)["f1"])


# ---------------------------------------------------------------- the task on made-up vectors


def _write_bucc(
    folder: Path,
    lang: str,
    split: str,
    src: list[tuple[str, str]],
    eng: list[tuple[str, str]],
    gold: list[tuple[str, str]],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{lang}-en.{split}"
    Path(f"{stem}.{lang}").write_text("".join(f"{i}\t{t}\n" for i, t in src), encoding="utf-8")
    Path(f"{stem}.en").write_text("".join(f"{i}\t{t}\n" for i, t in eng), encoding="utf-8")
    Path(f"{stem}.gold").write_text("".join(f"{a}\t{b}\n" for a, b in gold), encoding="utf-8")


def _vector_task(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra_src: list = ()) -> Path:
    """BUCC files whose sentences are the hand example's vectors (embed is replaced)."""
    vectors = {f"x{i}": v for i, v in enumerate(X)} | {f"y{j}": v for j, v in enumerate(Y)}
    monkeypatch.setattr(
        xalign_bucc, "embed", lambda encoder, texts, *a, **k: _tensor([vectors[t] for t in texts])
    )
    src = [("de-3", "x2"), ("de-1", "x0"), ("de-2", "x1"), *extra_src]
    eng = [("en-1", "y0"), ("en-2", "y1"), ("en-3", "y2")]
    gold = [("de-1", "en-1"), ("de-2", "en-2"), ("de-3", "en-3")]
    for split in ("dev", "test"):
        _write_bucc(tmp_path / "bucc2018", "de", split, src, eng, gold)
    return tmp_path


class _NoEncoder:
    layer = -1


def test_task_on_hand_vectors(monkeypatch, tmp_path) -> None:
    data_dir = _vector_task(monkeypatch, tmp_path)
    context = TaskContext(data_dir=data_dir, show_progress=False)
    # threshold 1.005: keeps (x2,y2) 1.016449 and (x0,y0) 1.011538, drops (x1,y1) 1.002232.
    task = BuccTask(BuccConfig(languages=["de"], k=2, threshold=1.005))
    result = task.evaluate(_NoEncoder(), context)
    scores = result.scores["de"]
    assert (scores["precision"], scores["recall"]) == (100.0, pytest.approx(200 / 3))
    assert scores["f1"] == pytest.approx(80.0) and scores["n_candidates"] == 3
    # per x sentence in file order de-3, de-1, de-2: matched 2, 2, 0; total 2, 2, 1 (5 in all)
    assert vars(result.counts["de"]) == {"matched": [2, 2, 0], "total": [2, 2, 1]}
    assert result.per_example["de"] == pytest.approx([120.0, 120.0, 0.0])
    assert np.mean(result.per_example["de"]) == pytest.approx(scores["f1"])
    # The dev split picks the threshold below every candidate: all 3 pairs correct -> F1 100.
    dev = BuccTask(BuccConfig(languages=["de"], k=2)).evaluate(_NoEncoder(), context)
    assert dev.scores["de"]["dev_f1"] == 100.0 and dev.scores["de"]["f1"] == 100.0
    assert dev.scores["de"]["threshold"] == pytest.approx(float(MARGIN[1, 1]))
    assert dev.meta["data"]["de"]["threshold_from"].endswith("de-en.dev.de")


def test_forward_retrieval_and_ambiguous_duplicates(monkeypatch, tmp_path) -> None:
    # x0's text also under a second id: XTREME cannot map its candidates to one id.
    data_dir = _vector_task(monkeypatch, tmp_path, extra_src=[("de-9", "x0")])
    context = TaskContext(data_dir=data_dir, show_progress=False)
    result = BuccTask(BuccConfig(languages=["de"], k=2, threshold=0.0)).evaluate(
        _NoEncoder(), context
    )
    assert result.scores["de"]["ambiguous_candidates"] == 1.0
    assert result.scores["de"]["recall"] == pytest.approx(200 / 3)  # (x0,y0) lost
    forward = BuccTask(
        BuccConfig(languages=["de"], k=2, threshold="test", retrieval="forward")
    ).evaluate(_NoEncoder(), context)
    # forward: (x2,y2) right, (x1,y0) wrong, (x0,y0) ambiguous -> best cut keeps (x2,y2) only
    assert forward.scores["de"]["f1"] == pytest.approx(50.0)
    assert forward.scores["de"]["test_f1"] == pytest.approx(50.0)


def test_inputs_are_the_files_read_not_the_whole_data_folder(monkeypatch, tmp_path) -> None:
    """The reuse key hashes the BUCC files a run reads: the test split, plus dev when the
    threshold is chosen there; not unrelated files of the data folder."""
    data_dir = _vector_task(monkeypatch, tmp_path)
    (tmp_path / "unrelated.txt").write_text("x", encoding="utf-8")
    _write_bucc(tmp_path / "bucc2018", "fr", "test", [("fr-1", "x0")], [("en-1", "y0")], [])
    context = TaskContext(data_dir=data_dir, show_progress=False)
    folder = tmp_path / "bucc2018"
    on_dev = BuccTask(BuccConfig(languages=["de"])).inputs(context)
    assert on_dev == sorted(
        folder / f"de-en.{s}.{x}" for s in ("dev", "test") for x in ("de", "en", "gold")
    )
    given = BuccTask(BuccConfig(languages=["de", "fr", "zh"], threshold=1.0)).inputs(context)
    assert given == sorted(
        folder / f"{x}-en.test.{e}" for x in ("de", "fr") for e in (x, "en", "gold")
    )
    only_fr = TaskContext(data_dir=data_dir, languages=["fr"], show_progress=False)
    assert BuccTask(BuccConfig(threshold="test")).inputs(only_fr) == sorted(
        folder / f"fr-en.test.{e}" for e in ("fr", "en", "gold")
    )


def test_a_split_without_usable_gold_is_refused_not_scored(monkeypatch, tmp_path) -> None:
    """An empty dev gold file used to give threshold 0 ("keep every candidate") and a wrong
    F1 without a word; so did a dev gold that matches no mined candidate, and a limit that
    cuts every gold pair out."""
    data_dir = _vector_task(monkeypatch, tmp_path)
    context = TaskContext(data_dir=data_dir, show_progress=False)
    folder = tmp_path / "bucc2018"
    (folder / "de-en.dev.gold").write_text("", encoding="utf-8")
    with pytest.raises(
        GoldFormatError, match=r"bucc: de dev \(local:.*\): its gold file has no pairs"
    ):
        BuccTask(BuccConfig(languages=["de"], k=2)).evaluate(_NoEncoder(), context)
    # a fixed threshold does not read dev at all
    BuccTask(BuccConfig(languages=["de"], k=2, threshold=1.005)).evaluate(_NoEncoder(), context)
    # gold pairs that no candidate matches (x0 is mined with y0, gold says y2, ...)
    (folder / "de-en.dev.gold").write_text("de-1\ten-3\nde-2\ten-1\nde-3\ten-2\n")
    with pytest.raises(
        GoldFormatError, match=r"de dev: none of the 3 mined candidates .* threshold: NUMBER"
    ):
        BuccTask(BuccConfig(languages=["de"], k=2)).evaluate(_NoEncoder(), context)
    # test: the first sentence of each pool (de-3, en-1) holds none of the 3 gold pairs
    with pytest.raises(
        GoldFormatError,
        match=r"de test .*: the first 1 sentences of each pool \(limit\) hold none of its 3",
    ):
        BuccTask(BuccConfig(languages=["de"], k=2, threshold=1.0, limit=1)).evaluate(
            _NoEncoder(), context
        )


def test_options_are_validated() -> None:
    assert BuccConfig().languages == ["de", "fr", "ru", "zh"]
    assert BuccConfig(languages="de, zh", threshold="1.2").threshold == 1.2
    for bad in (
        {"pooling": "max"},
        {"retrieval": "both"},
        {"threshold": "best"},
        {"k": 0},
        {"limit": 0},
    ):
        with pytest.raises(ValueError, match="bucc"):
            BuccConfig(**bad)


# ---------------------------------------------------------------- data files


def test_local_files_errors_name_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "bucc2018"
    _write_bucc(
        folder,
        "fr",
        "test",
        [("fr-1", "un"), ("fr-2", "deux")],
        [("en-1", "one")],
        [("fr-1", "en-1")],
    )
    data = load_bucc("fr", "test", tmp_path)
    assert data.src == [("fr-1", "un"), ("fr-2", "deux")] and data.gold == {("fr-1", "en-1")}
    assert data.source == f"local:{folder / 'fr-en.test.fr'}"
    assert load_bucc("fr", "test", folder).src == data.src  # data_dir = bucc2018 itself
    for subtagged in ("fr-FR", "fr_CA", "FR", " fr-Latn-FR"):  # the primary subtag's files
        assert load_bucc(subtagged, "test", tmp_path).gold == data.gold
        assert find_local(subtagged, "test", tmp_path)[0] == find_local("fr", "test", tmp_path)[0]
    (folder / "fr-en.test.gold").write_text("fr-1\ten-1\nfr-2\ten-7\n", encoding="utf-8")
    with pytest.raises(GoldFormatError, match=r"fr-en\.test\.gold line 2: id 'en-7' is not"):
        load_bucc("fr", "test", tmp_path)
    (folder / "fr-en.test.en").write_text("en-1\tone\nen-1\tagain\n", encoding="utf-8")
    with pytest.raises(GoldFormatError, match=r"test\.en line 2: duplicate id 'en-1'"):
        load_bucc("fr", "test", tmp_path)
    (folder / "fr-en.test.en").write_text("en-1 one\n", encoding="utf-8")
    with pytest.raises(GoldFormatError, match=r"test\.en line 1: expected 'id<TAB>sentence'"):
        load_bucc("fr", "test", tmp_path)
    (folder / "fr-en.test.gold").unlink()
    with pytest.raises(GoldFileNotFoundError, match="deletes \\*test.gold"):
        load_bucc("fr", "test", tmp_path)


def test_hub_rows_and_the_error_naming_both_sources(monkeypatch, tmp_path) -> None:
    rows = [
        {
            "source_sentence": "Haus",
            "target_sentence": "house",
            "source_lang": "de-7",
            "target_lang": "en-3",
        },
        {
            "source_sentence": "Baum",
            "target_sentence": "tree",
            "source_lang": "de-9",
            "target_lang": "en-1",
        },
    ]
    data = from_hub_rows("de", "dev", rows)
    assert data.src == [("de-7", "Haus"), ("de-9", "Baum")]
    assert data.gold == {("de-7", "en-3"), ("de-9", "en-1")}
    assert data.source == "hub:google/xtreme/bucc18.de/validation" and data.notes

    def offline(lang: str, split: str) -> None:
        raise ConnectionError("cannot reach the Hugging Face Hub at huggingface.co:443")

    monkeypatch.setattr("xalign_bucc.data._load_hub_rows", offline)
    with pytest.raises(DataUnavailableError) as err:
        load_bucc("zh", "test", tmp_path)
    message = str(err.value)
    assert "zh-en.test.{zh,en,gold}" in message and str(tmp_path / "bucc2018") in message
    assert "'google/xtreme' (config 'bucc18.zh', split 'test')" in message
    assert "ConnectionError: cannot reach" in message
    monkeypatch.setattr("xalign_bucc.data._load_hub_rows", lambda lang, split: rows)
    assert load_bucc("de", "dev", tmp_path).gold == data.gold


def test_limit_keeps_gold_inside_the_pools() -> None:
    data = BuccData(
        "de",
        "test",
        [("a", "1"), ("b", "2")],
        [("A", "1"), ("B", "2")],
        {("a", "A"), ("b", "B"), ("a", "B")},
        "x",
    )
    small = data.limited(1)
    assert small.src == [("a", "1")] and small.gold == {("a", "A")} and small.dropped_gold == 2


# ---------------------------------------------------------------- FLORES as a BUCC set

FLORES = {"de": "deu_Latn", "fr": "fra_Latn"}


def build_bucc_from_flores(
    flores: Path, out: Path, lang: str, n_gold: int, n_src_only: int, n_en_only: int, seed: int = 0
) -> Path:
    """A BUCC-format dev and test set from FLORES lines (``write_bucc_set``)."""
    xx = (flores / f"{FLORES[lang]}.devtest").read_text(encoding="utf-8").splitlines()
    en = (flores / "eng_Latn.devtest").read_text(encoding="utf-8").splitlines()
    return write_bucc_set(
        xx, en, out, lang, n_gold=n_gold, n_src_only=n_src_only, n_en_only=n_en_only, seed=seed
    )


def _build_small(files: list[str], lang: str, out: Path) -> None:
    """``python -m xalign_bucc.build`` with 8 gold pairs and one unpaired line per side and
    split (lines 1-20 of the files)."""
    build_main([*files, "--lang", lang, "--out", str(out), "--gold", "8", "--src-only", "1",
                "--en-only", "1"])  # fmt: skip


def test_build_writes_the_bucc_layout_with_disjoint_splits(tmp_path) -> None:
    src = [f"x{i}" for i in range(20)]
    en = [f"e{i}" for i in range(20)]
    build_main(
        [
            str(_lines(tmp_path / "s.txt", src)),
            str(_lines(tmp_path / "e.txt", en)),
            "--lang",
            "de",
            "--out",
            str(tmp_path / "d"),
            "--gold",
            "3",
            "--src-only",
            "2",
            "--en-only",
            "4",
        ]
    )
    seen: set[str] = set()
    for split in ("dev", "test"):
        data = load_bucc("de", split, tmp_path / "d")
        src_text, en_text = dict(data.src), dict(data.eng)
        assert (len(data.src), len(data.eng), len(data.gold)) == (5, 7, 3)
        # every gold pair is a line-aligned pair; no other xx sentence has its English side
        assert all(src_text[s][1:] == en_text[e][1:] for s, e in data.gold)
        assert sum(t[1:] in {v[1:] for v in en_text.values()} for t in src_text.values()) == 3
        texts = set(src_text.values()) | set(en_text.values())
        assert not texts & seen  # dev and test use disjoint lines
        seen |= texts
    with pytest.raises(SystemExit):  # 2 x 11 lines > 20
        build_main(
            [
                str(tmp_path / "s.txt"),
                str(tmp_path / "e.txt"),
                "--lang",
                "de",
                "--out",
                str(tmp_path / "d"),
                "--gold",
                "5",
                "--src-only",
                "2",
                "--en-only",
                "4",
            ]
        )


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x1c"])
def test_build_keeps_pairs_aligned_across_unicode_line_separators(tmp_path, separator) -> None:
    """A sentence holding U+2028 (or NEL, FS) is one line: read with str.splitlines, each
    file gained a line at a different place, and the pairs between them were shifted."""
    src = [f"x{i} a{separator}b" if i == 1 else f"x{i}" for i in range(20)]
    en = [f"e{i} c{separator}d" if i == 4 else f"e{i}" for i in range(20)]
    files = [str(_lines(tmp_path / "s.txt", src)), str(_lines(tmp_path / "e.txt", en))]
    out = tmp_path / "d"
    _build_small(files, "de", out)
    for split in ("dev", "test"):
        data = load_bucc("de", split, out)
        src_text, en_text = dict(data.src), dict(data.eng)
        assert len(data.gold) == 8
        # x{i} is paired with e{i}: the line numbers agree
        assert all(src_text[s].split()[0][1:] == en_text[e].split()[0][1:] for s, e in data.gold)
    assert f"x1 a{separator}b" in dict(load_bucc("de", "dev", out).src).values()


@pytest.mark.parametrize("code", ["de-DE", "de_DE", "DE", "de-Latn-DE"])
def test_build_writes_the_names_the_task_reads_for_a_subtagged_code(tmp_path, code) -> None:
    """--lang de-DE wrote de-DE-en.dev.de-DE, which bucc (reading de-en.dev.de) never found."""
    files = [str(_lines(tmp_path / n, [f"{n[0]}{i}" for i in range(20)])) for n in ("s", "e")]
    out = tmp_path / "d"
    _build_small(files, code, out)
    assert sorted(f.name for f in (out / "bucc2018").iterdir()) == [
        f"de-en.{split}.{ext}" for split in ("dev", "test") for ext in ("de", "en", "gold")
    ]
    assert load_bucc(code, "dev", out).src[0][0].startswith("de-")


def test_build_refuses_a_lang_that_is_no_language_code(tmp_path, capsys) -> None:
    files = [str(_lines(tmp_path / n, [f"{n[0]}{i}" for i in range(20)])) for n in ("s", "e")]
    with pytest.raises(SystemExit):
        build_main([*files, "--lang", "../x", "--out", str(tmp_path / "d"), "--gold", "8"])
    assert "bucc set: --lang: '../x' is not a language code" in capsys.readouterr().err


@pytest.mark.parametrize(("side", "blank"), [("source", "s"), ("English", "e")])
def test_build_refuses_empty_lines(tmp_path, capsys, side, blank) -> None:
    """An empty line became an empty sentence: nothing to mine, or (blank on both sides, as
    a document break) a trivial gold pair of two empty sentences."""
    lines = {n: [f"{n}{i}" for i in range(20)] for n in "se"}
    lines[blank][6] = "  "
    files = [str(_lines(tmp_path / f"{n}.txt", lines[n])) for n in "se"]
    out = tmp_path / "d"
    with pytest.raises(SystemExit):
        _build_small(files, "de", out)
    assert f"line 7 of the {side} file is empty" in capsys.readouterr().err
    assert not out.exists()
    # a blank line after the lines used is not read
    short = "--gold 2 --src-only 0 --en-only 1".split()  # lines 1-6
    build_main([*files, "--lang", "de", "--out", str(out), *short])
    assert len(load_bucc("de", "test", out).gold) == 2


def test_build_names_a_missing_or_undecodable_file(tmp_path, capsys) -> None:
    en = str(_lines(tmp_path / "e.txt", [f"e{i}" for i in range(20)]))
    latin = tmp_path / "s.txt"
    latin.write_bytes("".join(f"x{i} ü\n" for i in range(20)).encode("latin-1"))
    for src, expected in ((tmp_path / "none.txt", "none.txt"), (latin, "s.txt line 1")):
        with pytest.raises(SystemExit):
            build_main([str(src), en, "--lang", "de", "--out", str(tmp_path / "d")])
        assert expected in capsys.readouterr().err


def _lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def flores(shared_data: Path) -> Path:
    path = shared_data / "parallel" / "flores200_devtest"
    if not (path / "eng_Latn.devtest").is_file():
        pytest.skip(f"{path} is absent")
    return path


def test_tiny_model_end_to_end_on_flores(tiny_model, flores, tmp_path, one_thread) -> None:
    data_dir = build_bucc_from_flores(flores, tmp_path, "de", 30, 15, 30)
    context = TaskContext(data_dir=data_dir, show_progress=False)
    result = BuccTask(BuccConfig(languages=["de"])).run(str(tiny_model), context)
    scores = result.scores["de"]
    assert result.main_metric == "f1" and list(result.scores) == ["de"]
    assert (scores["n_gold"], scores["n_src"], scores["n_en"]) == (30, 45, 60)
    assert 0.0 <= scores["f1"] <= 100.0 and 0.0 <= scores["dev_f1"] <= 100.0
    assert len(result.per_example["de"]) == 45
    assert np.mean(result.per_example["de"]) == pytest.approx(scores["f1"])
    counts = vars(result.counts["de"])
    assert sum(counts["total"]) == scores["n_predicted"] + scores["n_gold"]
    assert result.meta["data"]["de"]["test"] == f"local:{data_dir}/bucc2018/de-en.test.de"


def test_eval_cli_and_compare_accept_bucc(tiny_model, flores, tmp_path, tracking_uri) -> None:
    data_dir = build_bucc_from_flores(flores, tmp_path, "fr", 10, 5, 10)
    out = CliRunner().invoke(
        app,
        [
            "eval",
            str(tiny_model),
            "--task",
            "bucc",
            "--data-dir",
            str(data_dir),
            "--option",
            "bucc.languages=[fr]",
            "--option",
            "bucc.threshold=test",
            "--tracking-uri",
            tracking_uri,
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    run = json.loads(out.stdout.strip().splitlines()[-1])["runs"][0]
    assert run["task"] == "bucc" and run["main_metric"] == "f1"
    assert run["scores"]["fr"]["f1"] == pytest.approx(run["scores"]["fr"]["test_f1"])
    listed = CliRunner().invoke(app, ["plugins", "--json"])
    assert '"bucc"' in listed.stdout
    from xalign.compare import _check_inputs
    from xalign.plugins import get_registry

    options = _check_inputs(["sinkhorn"], ["bucc"], 1, {"bucc": {"threshold": 1.0}}, get_registry())
    assert options == {"bucc": {"threshold": 1.0}}


@pytest.mark.integration
def test_e5_mines_german_pairs(flores, tmp_path) -> None:
    data_dir = build_bucc_from_flores(flores, tmp_path, "de", 50, 20, 50)
    context = TaskContext(data_dir=data_dir, show_progress=False)
    result = BuccTask(BuccConfig(languages=["de"])).run("packaged:multilingual-e5-small", context)
    # 50 gold pairs among 70 German and 100 English sentences per split; chance F1 is ~0.
    # Measured: F1 100.0 (dev F1 99.4, threshold 1.032) with 80/20/80 sentences per split.
    assert result.scores["de"]["f1"] > 80.0, result.scores
    assert result.scores["de"]["dev_f1"] > 80.0, result.scores
