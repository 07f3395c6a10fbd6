"""The sentence-level objectives (distill, translation_ranking) train the embedded e5 on the
demo corpus: two steps, a finite loss in the objective's expected range."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from conftest import as_sets, run_json

#: objective -> (its extra settings, the range its two-step loss on e5 must fall in)
CASES: dict[str, tuple[list[str], Callable[[float], bool]]] = {
    # MSE to the teacher (by default the frozen initial model): small but positive on e5
    "distill": ([], lambda v: 0 < v < 10),
    # e5 already ranks translations: below the value of equal cosines, 2·(log 8 + s·m)
    "translation_ranking": (
        [
            "objectives.translation_ranking.pooling=mean",
            "objectives.translation_ranking.scale=20",
        ],
        lambda v: 0 <= v < 2 * (math.log(8) + 20 * 0.3),
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("objective", sorted(CASES))
def test_trains_the_embedded_e5_on_the_demo_corpus(tmp_path, tracking_uri, objective: str):
    extra, in_range = CASES[objective]
    out = run_json(
        [
            "-o",
            objective,
            *as_sets(
                [
                    "model.name=packaged:multilingual-e5-small",
                    "data.languages=[de]",
                    "data.limit=16",
                    "train.batch_size=8",
                    "train.max_steps=2",
                    "train.freeze_embeddings=true",
                    "train.save_model=false",
                    f"train.output_dir={tmp_path}",
                    f"tracking.uri={tracking_uri}",
                    *extra,
                ]
            ),
        ]
    )
    value = out["metrics"][f"de-en/{objective}"]
    assert in_range(value), value
