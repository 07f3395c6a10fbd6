"""Base class for alignment objectives (the thing a plugin registers)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from xalign.batch import AlignmentBatch
from xalign.links import LinkSpec
from xalign.schema import build_dataclass  # options are typed: checked against annotations


@dataclass(frozen=True)
class Needs:
    """What an objective reads from the batch; the trainer computes exactly this.

    - ``links``: eflomal word links for each listed spec (computed once per corpus).
    - ``frozen_target``: the frozen initial model's English vectors (``batch.tgt_frozen``).
    - ``mixed_languages``: one batch mixing all language pairs instead of one per pair.
    """

    links: tuple[LinkSpec, ...] = ()
    frozen_target: bool = False
    mixed_languages: bool = False

    def describe(self) -> list[str]:
        """Short human-readable list, as shown by ``xalign plugins``."""
        out = []
        for s in self.links:
            filters = [
                f
                for f, on in (("one-to-one", s.one_to_one), ("identical dropped", s.drop_identical))
                if on
            ]
            out.append(
                f"word links ({', '.join([s.symmetrization, *filters])}, <= {s.max_words} words)"
            )
        if self.frozen_target:
            out.append("frozen target vectors")
        if self.mixed_languages:
            out.append("mixed-language batches")
        return out


@dataclass
class NoOptions:
    """An objective without options."""


class Objective(nn.Module):
    """An alignment objective: options dataclass + ``needs()`` + ``loss(batch)``.

    Subclasses set ``name``, ``description`` and ``Config`` (a dataclass of options with
    defaults). ``loss`` returns a scalar to *minimise*, averaged over the batch's sentence
    pairs (xalign sums it over language pairs and handles accumulation and data parallelism).
    Objectives may own parameters (e.g. a projection head); they are trained with the encoder.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoOptions

    def __init__(self, config: Any | None = None, *, hidden_size: int) -> None:
        super().__init__()
        self.config = config if config is not None else self.Config()
        self.hidden_size = hidden_size

    def needs(self) -> Needs:
        """What this objective needs from the batch (may depend on its options)."""
        return Needs()

    def prepare(self, data: Any) -> None:
        """Called once before training with the training data (e.g. corpus statistics).

        ``data.pairs`` lists each language pair with ``.src``, ``.tgt`` and ``.examples``
        (``src_words``/``tgt_words``: the Moses words the batches will hold). Default: no-op.
        """

    def loss(self, batch: AlignmentBatch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Default options as a plain dict."""
        return dataclasses.asdict(cls.Config())

    @classmethod
    def from_options(cls, options: dict[str, Any], *, hidden_size: int) -> Objective:
        """Build from a dict of options; an unknown key or a value that does not fit the
        ``Config`` annotation raises :class:`~xalign.errors.ConfigError` naming the key."""
        return cls(
            build_dataclass(cls.Config, options, where=f"objective {cls.name!r}"),
            hidden_size=hidden_size,
        )


__all__ = ["Needs", "NoOptions", "Objective", "build_dataclass", "field"]
