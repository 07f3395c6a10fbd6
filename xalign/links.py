"""What word links an objective asks for (computed once per corpus with eflomal)."""

from __future__ import annotations

from dataclasses import dataclass

SYMMETRIZATIONS = ("intersection", "union", "grow-diag", "grow-diag-final", "grow-diag-final-and")


@dataclass(frozen=True)
class LinkSpec:
    """eflomal settings and filters for one set of training-corpus word links.

    ``symmetrization``: how forward and reverse eflomal links are combined (Cao et al. 2020
    use ``intersection``; Wu & Dredze 2020 ``grow-diag-final-and``). ``one_to_one`` keeps only
    words in exactly one link; ``drop_identical`` drops pairs of identical strings; sentences
    longer than ``max_words`` words on either side get no links.
    """

    symmetrization: str = "intersection"
    one_to_one: bool = True
    drop_identical: bool = False
    max_words: int = 64

    def __post_init__(self) -> None:
        if self.symmetrization not in SYMMETRIZATIONS:
            raise ValueError(
                f"unknown symmetrization {self.symmetrization!r}; choose one of {SYMMETRIZATIONS}"
            )
