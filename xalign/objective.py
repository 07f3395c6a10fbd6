"""Base class for alignment objectives (the thing a plugin registers)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor, nn

from xalign.batch import AlignmentBatch
from xalign.errors import ConfigError, DeprecatedOptionWarning
from xalign.links import LinkSpec
from xalign.schema import build_dataclass  # options are typed: checked against annotations


@dataclass(frozen=True)
class Needs:
    """What an objective reads from the batch; the trainer computes exactly this.

    - ``links``: eflomal word links for each listed spec (computed once per corpus).
    - ``frozen_target``: the frozen initial model's English vectors (``batch.tgt_frozen``).
    - ``mixed_languages``: one batch mixing all language pairs instead of one per pair.
    - ``teacher``: a model name or path (anything ``xalign.load_encoder`` loads): the trainer
      loads it once, frozen (eval mode, no gradient, not trained, not in the optimizer, the
      checkpoints or the saved model), and gives its last layer's view of the target
      (English) side as ``batch.teacher_for(teacher)``. Cost: the model's memory and one
      forward of the target side per batch, without backward.
    - ``gathers``: ``loss()`` calls the collective :func:`xalign.gather_rows` (negatives from
      the global batch under data parallelism); the trainer then calls it on every rank for
      every batch, with an empty batch on a rank whose shard of that batch is empty.
    - ``mlm``: the encoder's masked-LM head (``batch.mlm``, :class:`~xalign.batch.MaskedLM`);
      the run's model must have a trained one (else an error at setup naming the model).
    """

    links: tuple[LinkSpec, ...] = ()
    frozen_target: bool = False
    mixed_languages: bool = False
    # sentence-level objectives (translation_ranking, distill)
    teacher: str | None = None
    gathers: bool = False
    mlm: bool = False

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
        if self.teacher is not None:
            out.append(f"teacher vectors ({self.teacher})")
        if self.gathers:
            out.append("global batch gathered across ranks")
        if self.mlm:
            out.append("masked-LM head (extra encoder passes)")
        return out


@runtime_checkable
class PreparedExample(Protocol):
    """One sentence pair as :meth:`Objective.prepare` sees it: the Moses words the batches will
    hold (``batch.src.words`` / ``batch.tgt.words`` of the same pair)."""

    @property
    def src_words(self) -> Sequence[str]: ...

    @property
    def tgt_words(self) -> Sequence[str]: ...


@runtime_checkable
class PreparedPair(Protocol):
    """One language pair of the training data: codes as in ``batch.src.langs`` (``src``) and
    ``batch.tgt.langs`` (``tgt``, e.g. ``"en"``), and its sentence pairs after filtering."""

    @property
    def src(self) -> str: ...

    @property
    def tgt(self) -> str: ...

    @property
    def examples(self) -> Iterable[PreparedExample]:
        """Every kept sentence pair once (not upsampled); may be iterated several times, each
        pass giving the same pairs in the same order."""
        ...


@runtime_checkable
class PreparedCorpus(Protocol):
    """The training data given to :meth:`Objective.prepare`: what the built-in objectives read
    and nothing more (the trainer's ``ParallelData`` satisfies it, and so must any other
    source of training data). ``pairs`` may be iterated several times."""

    @property
    def pairs(self) -> Iterable[PreparedPair]: ...


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
    #: Deprecated option names -> their current names (``{"weights": "point_weights"}``): the
    #: old name keeps working with a :class:`~xalign.errors.DeprecatedOptionWarning`; giving
    #: both is a :class:`~xalign.errors.ConfigError`. See :meth:`upgrade_options`.
    renamed_options: ClassVar[Mapping[str, str]] = {}

    def __init__(self, config: Any | None = None, *, hidden_size: int) -> None:
        super().__init__()
        self.config = config if config is not None else self.Config()
        self.hidden_size = hidden_size

    def needs(self) -> Needs:
        """What this objective needs from the batch (may depend on its options): by default
        :meth:`needs_for` of its ``config`` when a subclass overrides that, else nothing.
        Override either; see :meth:`needs_for`."""
        if type(self).needs_for.__func__ is Objective.needs_for.__func__:  # type: ignore[attr-defined]
            return Needs()  # also what ``super().needs()`` gives an overriding needs()
        return type(self).needs_for(self.config)

    @classmethod
    def needs_for(cls, config: Any) -> Needs:
        """What an objective with options ``config`` (an instance of ``Config``) needs, without
        building it: no parameters, no hidden size. xalign asks this before any model is loaded
        (the config check, ``xalign plugins``, ``xalign prepare``'s links).

        Override it (a classmethod) when ``needs()`` depends on more than ``config``, or
        override only ``needs()``: the default calls that ``needs()`` on an instance whose
        ``__init__`` has not run (only ``self.config`` is set, methods work), so a ``needs()``
        that reads ``self.config`` and calls methods is answered as is. One that reads an
        attribute set in ``__init__`` raises ``AttributeError`` here; xalign then builds the
        objective with the real hidden size where one is loaded (training, ``xalign prepare``)
        and skips the config-time check.
        """
        unbuilt = object.__new__(cls)  # nn.Module.__init__ not run: no parameters
        unbuilt.__dict__["config"] = config
        return cls.needs(unbuilt)

    def prepare(self, data: PreparedCorpus) -> None:
        """Called once before training with the training data (e.g. corpus statistics such as
        ``sinkhorn``'s idf). Read only what :class:`PreparedCorpus` declares: ``data.pairs``,
        each with ``.src``, ``.tgt`` and ``.examples`` (``src_words``/``tgt_words``). Default:
        no-op."""

    def loss(self, batch: AlignmentBatch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Default options as a plain dict."""
        return dataclasses.asdict(cls.Config())

    @classmethod
    def upgrade_options(
        cls,
        options: Mapping[str, Any],
        *,
        owner: str | None = None,
        at: Callable[[str], str | None] | None = None,
    ) -> dict[str, Any]:
        """``options`` with every deprecated name of :attr:`renamed_options` replaced by its
        current name (order kept), warning once per old name given.

        ``owner`` names the objective in messages (default ``objective 'NAME'``; the config
        passes the plugin's ``where()``); ``at(dotted_key)`` gives the file:line or override a
        key came from. Raises :class:`~xalign.errors.ConfigError` when an old name and its new
        name are both given (whatever their values).
        """
        owner = owner or f"objective {cls.name!r}"
        key = f"objectives.{cls.name}"
        out: dict[str, Any] = {}
        for name, value in options.items():
            new = cls.renamed_options.get(name)
            if new is None:
                out[name] = value
                continue
            where = (at(f"{key}.{name}") if at else None) or owner
            if new in options:
                raise ConfigError(
                    f"{where}: {key}: both {name!r} (the deprecated name) and {new!r} are given "
                    f"for {owner}; keep only {new!r}"
                )
            warnings.warn(
                f"{where}: {key}.{name} is deprecated; use {key}.{new} (same values)",
                DeprecatedOptionWarning,
                stacklevel=3,
            )
            out[new] = value
        return out

    @classmethod
    def config_from(cls, options: Mapping[str, Any]) -> Any:
        """The ``Config`` instance of a dict of options (deprecated names accepted, see
        :meth:`upgrade_options`); an unknown key or a value that does not fit the ``Config``
        annotation raises :class:`~xalign.errors.ConfigError` naming the key."""
        return build_dataclass(
            cls.Config, cls.upgrade_options(options), where=f"objective {cls.name!r}"
        )

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, hidden_size: int) -> Objective:
        """Build from a dict of options (:meth:`config_from`, same errors)."""
        return cls(cls.config_from(options), hidden_size=hidden_size)


__all__ = [
    "Needs",
    "NoOptions",
    "Objective",
    "PreparedCorpus",
    "PreparedExample",
    "PreparedPair",
    "build_dataclass",
    "field",
]
