"""Tests of the template task with xalign's public test helpers (``xalign.testing``): a tiny
random encoder written by ``tiny_encoder`` and a ``TaskContext`` as ``xalign eval`` builds it.
"""

from __future__ import annotations

import pytest
import torch
import xalign
from xalign.testing import tiny_encoder

from xalign_example.task import PAIRS, PairRetrieval, retrieval_hits


def test_retrieval_hits_by_hand():
    # row 0 is nearest to English row 0 (hit); row 1 (0, 1) is nearest to row 0 (1, 1): miss
    src = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tgt = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    assert retrieval_hits(src, tgt) == [1.0, 0.0]


def test_run_on_a_tiny_encoder(tmp_path):
    model = tiny_encoder(tmp_path / "tiny", hidden=16)
    context = xalign.TaskContext(
        output_dir=tmp_path / "eval", seed=0, device="cpu", languages=["de"], show_progress=False
    )
    result = PairRetrieval().run(str(model), context)
    assert set(result.scores) == {"de"}
    hits = result.per_example["de"]
    assert len(hits) == len(PAIRS["de"]) and set(hits) <= {0.0, 1.0}
    # the score is what the declared metric (scale 100) makes of the items
    assert result.scores["de"]["accuracy"] == pytest.approx(100.0 * sum(hits) / len(hits))
    assert PairRetrieval.metrics[0].higher_is_better
