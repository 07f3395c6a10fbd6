"""The one data-folder rule (:func:`xalign.data_root`): order, edge cases, and every call site.

Order: explicit ``data_dir`` > ``$XALIGN_SHARED_DATA`` (only if it is a folder; a set variable
is never replaced by a guess) > ``../shared/data`` beside the current directory > beside the
checkout holding the ``xalign`` package.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from xalign_bucc.data import _search_dirs as bucc_folders
from xalign_mlqa import mlqa_folders
from xalign_udpos.data import ud_folders

import xalign
import xalign.paths as rule
from xalign.alignment.gold import GoldFileNotFoundError, _align_dir, load_gold
from xalign.evaluation.data import _search_dirs as eval_folders
from xalign.provenance import data_roots

ENV = "XALIGN_SHARED_DATA"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """``tmp/cwd-parent/{work, shared/data}``, ``tmp/repo-parent/{repo, shared/data}``,
    ``tmp/env-data``, ``tmp/explicit``; cwd = ``work``, checkout = ``repo``, no env var."""
    paths = {
        "work": tmp_path / "a" / "work",
        "cwd_shared": tmp_path / "a" / "shared" / "data",
        "repo": tmp_path / "b" / "repo",
        "repo_shared": tmp_path / "b" / "shared" / "data",
        "env": tmp_path / "env-data",
        "explicit": tmp_path / "explicit",
    }
    for path in paths.values():
        path.mkdir(parents=True)
    monkeypatch.chdir(paths["work"])
    monkeypatch.setattr(rule, "CHECKOUT", paths["repo"])
    monkeypatch.delenv(ENV, raising=False)
    return paths


def test_explicit_folder_wins_over_everything(tree, monkeypatch):
    monkeypatch.setenv(ENV, str(tree["env"]))
    assert xalign.data_root(tree["explicit"]) == tree["explicit"]
    assert xalign.data_root(str(tree["explicit"])) == tree["explicit"]  # str or Path
    missing = tree["explicit"] / "nope"  # returned anyway: the error names the user's folder
    assert xalign.data_root(missing) == missing
    monkeypatch.setenv("HOME", str(tree["explicit"]))
    assert xalign.data_root("~/x") == tree["explicit"] / "x"
    assert xalign.describe_data_root(missing) == f"--data-dir {missing}"


def test_env_var_wins_over_shared_folders(tree, monkeypatch):
    monkeypatch.setenv(ENV, str(tree["env"]))
    assert xalign.data_root() == tree["env"]
    assert xalign.describe_data_root() == f"no data_dir given; ${ENV}={tree['env']}"


def test_env_var_naming_a_missing_folder_is_not_replaced_by_a_guess(tree, monkeypatch):
    monkeypatch.setenv(ENV, str(tree["env"] / "missing"))
    assert xalign.data_root() is None  # although ../shared/data exists beside cwd and repo
    assert xalign.describe_data_root() == (
        f"no data_dir given; ${ENV}={tree['env'] / 'missing'} is not a folder"
    )
    monkeypatch.setenv(ENV, str(tree["cwd_shared"] / "file.txt"))
    (tree["cwd_shared"] / "file.txt").write_text("x")
    assert xalign.data_root() is None  # a file is not a folder


def test_empty_env_var_counts_as_unset(tree, monkeypatch):
    monkeypatch.setenv(ENV, "")
    assert xalign.data_root() == tree["cwd_shared"]


def test_beside_cwd_wins_over_beside_checkout(tree):
    assert xalign.data_root() == tree["cwd_shared"]
    assert xalign.describe_data_root() == (
        f"no data_dir given, ${ENV} unset; ../shared/data: {tree['cwd_shared']}"
    )


def test_beside_checkout_when_cwd_has_none(tree):
    tree["cwd_shared"].rmdir()
    assert xalign.data_root() == tree["repo_shared"]


def test_nothing_found(tree):
    tree["cwd_shared"].rmdir()
    tree["repo_shared"].rmdir()
    assert xalign.data_root() is None
    text = xalign.describe_data_root()
    assert text == (
        f"no data_dir given, ${ENV} unset, no ../shared/data beside "
        f"{tree['work']} or {tree['repo']}"
    )


@pytest.mark.parametrize("setup", ["env", "cwd", "checkout"])
def test_every_call_site_uses_the_same_root(tree, monkeypatch, setup):
    """The evaluation loaders, the gold sets, the task-input hashing and the bucc, udpos and
    mlqa plugins all search below the one root (before: three rules)."""
    if setup == "env":
        monkeypatch.setenv(ENV, str(tree["env"]))
        root = tree["env"]
    elif setup == "cwd":
        root = tree["cwd_shared"]
    else:
        tree["cwd_shared"].rmdir()
        root = tree["repo_shared"]
    (root / "align").mkdir()
    assert eval_folders(None, ["xnli"]) == [root / "xnli"]
    assert _align_dir(None) == root / "align"
    assert data_roots(None) == [root]
    assert bucc_folders(None) == [root / "bucc2018"]
    assert ud_folders(None) == [root / "ud"]
    assert mlqa_folders(None, "test")[:2] == [root / "mlqa" / "test", root / "mlqa"]


def test_call_sites_without_a_root(tree, monkeypatch):
    monkeypatch.setenv(ENV, str(tree["env"] / "missing"))
    assert eval_folders(None, ["xnli"]) == []
    assert data_roots(None) == []
    assert bucc_folders(None) == [] and ud_folders(None) == []
    with pytest.raises(
        GoldFileNotFoundError,
        match=r"no gold data folder: no data_dir given; \$XALIGN_SHARED_DATA=.* is not a folder",
    ):
        load_gold("bicici-deen")
    assert xalign.available_gold_sets() == []


# -- the one cache root ($XALIGN_CACHE_DIR) and its call sites -----------------------------------
def test_cache_root_env_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    from xalign.alignment.eflomal_aligner import default_cache_dir
    from xalign.data.prepare import prepared_root
    from xalign.encoders import e5

    monkeypatch.setenv(rule.CACHE_ENV, str(tmp_path / "c"))
    assert rule.CACHE_ENV == e5.CACHE_ENV == "XALIGN_CACHE_DIR"
    assert rule.cache_root() == tmp_path / "c"
    assert default_cache_dir() == tmp_path / "c" / "eflomal"
    assert prepared_root() == tmp_path / "c" / "prepared"
    monkeypatch.setenv(rule.CACHE_ENV, "~/x-cache")
    assert rule.cache_root() == Path("~/x-cache").expanduser()
    for unset in (None, ""):  # unset or empty: the platform's user cache folder
        if unset is None:
            monkeypatch.delenv(rule.CACHE_ENV)
        else:
            monkeypatch.setenv(rule.CACHE_ENV, unset)
        assert rule.cache_root() == Path(platformdirs.user_cache_dir("xalign"))
        assert prepared_root() == rule.cache_root() / "prepared"
