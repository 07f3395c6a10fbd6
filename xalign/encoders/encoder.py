"""Load an HF encoder (hub id, local path, or ``packaged:``) and turn words into subword states."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from xalign.batch import MaskedLM, Side
from xalign.encoders.weight_files import (
    EncoderLoadError,
    check_finite,
    check_loaded,
    model_files,
    non_float_problem,
)
from xalign.errors import ConfigError

PACKAGED_PREFIX = "packaged:"
PACKAGED_MODELS = ("multilingual-e5-small",)


@dataclass
class EncodedWords:
    """Subword ids of pre-tokenised sentences plus the subword -> word map."""

    input_ids: Tensor
    attention_mask: Tensor
    word_index: Tensor
    n_words: Tensor

    def to(self, device: torch.device | str) -> EncodedWords:
        return EncodedWords(
            *(
                t.to(device)
                for t in (self.input_ids, self.attention_mask, self.word_index, self.n_words)
            )
        )


def resolve_model_dir(name: str) -> str:
    """Map ``packaged:NAME`` to its converted local directory; anything else is returned as is."""
    if name.startswith(PACKAGED_PREFIX):
        which = name[len(PACKAGED_PREFIX) :]
        if which not in PACKAGED_MODELS:
            raise EncoderLoadError(
                f"unknown packaged model {which!r}; available: {', '.join(PACKAGED_MODELS)}"
            )
        from xalign.encoders.e5 import packaged_e5_dir

        return str(packaged_e5_dir())
    return name


def fit_max_length(model: nn.Module, tokenizer, wanted: int) -> int:
    """``wanted`` capped at the model's position embeddings and the tokenizer's limit."""
    limits = [wanted, model.config.max_position_embeddings]
    if tokenizer.model_max_length < 1_000_000:  # "unset" is a huge sentinel
        limits.append(tokenizer.model_max_length)
    return min(limits)


class Encoder(nn.Module):
    """A transformers encoder plus its tokenizer; returns one layer's subword states."""

    def __init__(
        self, model: nn.Module, tokenizer, *, name: str, layer: int = -1, max_length: int = 128
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.layer = layer
        self.max_length = fit_max_length(model, tokenizer, max_length)
        n_layers = model.config.num_hidden_layers
        if not -n_layers - 1 <= layer <= n_layers:
            raise ConfigError(
                f"layer {layer} out of range for {name} ({n_layers} layers: "
                f"use -{n_layers + 1}..{n_layers}, -1 = last)"
            )

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def tokenize_words(self, sentences: list[list[str]]) -> EncodedWords:
        """Subword-tokenise pre-tokenised sentences; words cut by ``max_length`` are dropped."""
        enc = self.tokenizer(
            sentences,
            is_split_into_words=True,
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        word_index = torch.full_like(enc["input_ids"], -1)
        n_words = torch.zeros(len(sentences), dtype=torch.long)
        for b in range(len(sentences)):
            ids = [-1 if w is None else w for w in enc.word_ids(b)]
            word_index[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            n_words[b] = max(ids) + 1 if ids else 0
        return EncodedWords(enc["input_ids"], enc["attention_mask"], word_index, n_words)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        if self.layer == -1:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        return out.hidden_states[self.layer]

    def encode(
        self,
        sentences: list[list[str]],
        langs: list[str],
        *,
        pooling: str = "last",
        device: torch.device | str | None = None,
    ) -> Side:
        """Tokenise and encode word-tokenised sentences into a :class:`Side`."""
        device = device or next(self.parameters()).device
        enc = self.tokenize_words(sentences).to(device)
        hidden = self(enc.input_ids, enc.attention_mask)
        side = Side(
            hidden, enc.word_index, enc.n_words, sentences, langs, pooling, enc.attention_mask
        )
        side.input_ids = enc.input_ids  # free: already on the device (read by Needs.mlm users)
        return side

    # -- masked-LM head (Needs.mlm: the tlm objective) ------------------------------------
    def attach_mlm_head(
        self, source: str, objectives: list[str], revision: str | None = None
    ) -> None:
        """Load the masked-LM head of ``source`` (the model's path) and share its base with
        this encoder (tied output embeddings re-tied to this encoder's input embeddings).

        Raises :class:`EncoderLoadError` naming the model and ``objectives`` when the model has
        no trained MLM head (its checkpoint lacks the head's weights, e.g. the embedded e5, or
        its architecture has none): a random head is never trained silently.
        """
        from transformers import AutoModelForMaskedLM

        who = f"objective(s) {', '.join(objectives)} need(s) a masked-LM head"
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the missing-head report becomes our error below
        try:
            mlm, info = AutoModelForMaskedLM.from_pretrained(
                resolve_model_dir(source),
                output_loading_info=True,
                revision=revision,
                local_files_only=True,
            )
        except (OSError, ValueError, KeyError) as exc:
            raise EncoderLoadError(
                f"{who}, but {self.name} cannot be loaded with one: {exc}"
            ) from exc
        finally:
            hf_logging.set_verbosity(level)
        prefix = mlm.base_model_prefix
        heads = [(n, m) for n, m in mlm.named_children() if n != prefix]
        missing = [k for k in info.get("missing_keys", []) if not k.startswith(prefix + ".")]
        if missing or len(heads) != 1:
            what = (
                f"its checkpoint lacks {', '.join(sorted(missing)[:3])}"
                if missing
                else (f"{type(mlm).__name__} has {len(heads)} head modules (xalign supports one)")
            )
            raise EncoderLoadError(
                f"{who}, but {self.name} has no trained masked-LM head ({what}); use a model "
                f"saved with its MLM head (AutoModelForMaskedLM: mBERT, XLM-R) or drop the "
                f"objective(s)"
            )
        head_name, head = heads[0]
        check_finite(  # the encoder's weights were checked when it loaded
            ((f"{head_name}.{k}", t) for k, t in head.state_dict().items()),
            str(resolve_model_dir(source)),
            self.name,
        )
        setattr(mlm, prefix, self.model)  # one base: the encoder's (trained, checkpointed)
        if getattr(mlm.config, "tie_word_embeddings", False):
            mlm.get_output_embeddings().weight = self.model.get_input_embeddings().weight
        self.mlm_head = head.to(next(self.model.parameters()).device)
        self.__dict__["_mlm_model"] = mlm  # not a submodule: its parameters are registered once

    def masked_lm(self) -> MaskedLM:
        """The :class:`~xalign.batch.MaskedLM` view of the attached head (see
        :meth:`attach_mlm_head`)."""
        if getattr(self, "mlm_head", None) is None:
            raise RuntimeError("no masked-LM head attached (declare Needs(mlm=True))")
        tok = self.tokenizer
        return MaskedLM(
            self.mlm_logits,
            mask_token_id=tok.mask_token_id,
            pad_token_id=tok.pad_token_id,
            vocab_size=len(tok),
            max_length=self.max_length,
            special_ids=frozenset(tok.all_special_ids),
        )

    def mlm_logits(
        self, input_ids: Tensor, attention_mask: Tensor, select: Tensor | None = None
    ) -> Tensor:
        """Masked-LM logits (float32): ``[B, T, V]``, or ``[N, V]`` for the N positions where
        ``select`` ``[B, T]`` (bool) is True (the head then runs on those positions only)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if select is not None:
            hidden = hidden[select]
        return self.mlm_head(hidden).float()

    def frozen_copy(self) -> Encoder:
        """A frozen copy of the current weights (the drift regulariser's c0)."""
        from xalign.encoders.lora import without_adapters

        frozen = copy.deepcopy(self)
        frozen.model = without_adapters(frozen.model)  # LoRA: c0 is the base model
        frozen.eval()
        frozen.requires_grad_(False)
        return frozen

    def save(self, directory: Path) -> None:
        """Save model and tokenizer so ``load_encoder(str(directory))`` reloads them (with an
        attached MLM head: the whole masked-LM model, loadable with or without its head; with
        LoRA: the adapter only, in peft's layout, naming its base model)."""
        model = self.__dict__.get("_mlm_model") or self.model
        model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)


def load_encoder(
    name: str,
    *,
    layer: int = -1,
    max_length: int = 128,
    revision: str | None = None,
    dtype: torch.dtype | None = None,
    setting: str | None = None,
) -> Encoder:
    """Load any HF encoder by hub id or local path, or ``packaged:multilingual-e5-small``.

    ``setting``: the config key (``--set SETTING=./models/...``, e.g. ``model.name``),
    command-line option (``--model``) or ``FILE.json:KEY`` that named the model, for the
    error's "use a local copy" hint; None (the default) when the caller does not know (a task
    plugin run by ``xalign eval MODEL``, a plugin's teacher): the hint then names the folder
    to give instead.

    Raises:
        EncoderLoadError: the model cannot be loaded (the message says where it was looked
            for and how to point at a local copy).
    """
    from transformers import AutoModel, AutoTokenizer

    from xalign.encoders.lora import adapter_base

    adapter = adapter_base(Path(name)) if Path(name).is_dir() else None
    if adapter is not None:  # a LoRA run's model folder: base model + adapter, merged
        return _load_adapter(name, adapter, layer=layer, max_length=max_length, dtype=dtype)
    path = resolve_model_dir(name)
    # read now, not when huggingface_hub was imported: HF_HUB_OFFLINE set later (a notebook,
    # a test) still means no network attempt (otherwise: retries until connection timeouts)
    kw = {"revision": revision, "local_files_only": _hub_offline()}
    try:
        with model_files(path, name):
            tokenizer = AutoTokenizer.from_pretrained(path, **kw)
            # a shape mismatch reported in info (check_loaded names it), not raised
            kw |= {"dtype": dtype, "output_loading_info": True, "ignore_mismatched_sizes": True}
            try:  # the pooler is never used: don't create (and train) it
                model, info = AutoModel.from_pretrained(path, add_pooling_layer=False, **kw)
            except TypeError:
                model, info = AutoModel.from_pretrained(path, **kw)
    except (OSError, ValueError) as exc:
        raise EncoderLoadError(_load_hint(name, exc, setting)) from exc
    check_loaded(model, info, path, name)
    if not getattr(tokenizer, "is_fast", False):
        raise EncoderLoadError(f"{name}: xalign needs a fast tokenizer (word_ids); got a slow one")
    return Encoder(model, tokenizer, name=name, layer=layer, max_length=max_length)


@contextlib.contextmanager
def plain_model_dir(directory: str) -> Iterator[str]:
    """``directory`` itself, or for an adapter folder a temporary folder holding its base model
    with the adapter merged in (and the tokenizer): what ``AutoModelFor*`` classes can load
    (task fine-tuning puts a new head on the merged encoder)."""
    import tempfile

    from xalign.encoders.lora import adapter_base

    if not Path(directory).is_dir() or adapter_base(Path(directory)) is None:
        yield directory
        return
    encoder = load_encoder(directory)
    with tempfile.TemporaryDirectory(prefix="xalign-merged-") as tmp:
        encoder.model.save_pretrained(tmp, safe_serialization=True)
        encoder.tokenizer.save_pretrained(tmp)
        del encoder
        yield tmp


def _load_adapter(
    name: str,
    adapter: tuple[str, str | None],
    *,
    layer: int,
    max_length: int,
    dtype: torch.dtype | None,
) -> Encoder:
    """The base model named by an adapter folder with the adapter merged in (peft
    ``PeftModel.from_pretrained`` + ``merge_and_unload``) and the base model's tokenizer."""
    from peft import PeftModel

    from xalign.encoders.lora import ADAPTER_CONFIG, quiet_peft

    base_name, revision = adapter
    where = f"{Path(name) / ADAPTER_CONFIG}:base_model_name_or_path"  # names the base model
    base = load_encoder(base_name, revision=revision, dtype=dtype, setting=where)
    adapter_file = Path(name) / "adapter_model.safetensors"
    problem = non_float_problem(adapter_file) if adapter_file.is_file() else None
    if problem:  # peft would cast the LoRA weights silently
        raise EncoderLoadError(f"LoRA adapter {name}: {adapter_file}: {problem}")
    try:
        with quiet_peft():
            model = PeftModel.from_pretrained(base.model, name).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise EncoderLoadError(f"could not apply the LoRA adapter at {name}: {exc}") from exc
    return Encoder(model, base.tokenizer, name=name, layer=layer, max_length=max_length)


def _hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it (1/ON/YES/TRUE), at call time."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _load_hint(name: str, exc: Exception, setting: str | None = None) -> str:
    from xalign.cli.common import looks_like_path

    local = Path(name).expanduser()
    if local.exists():
        return f"could not load the model at {local}: {exc}"
    if looks_like_path(name):  # a folder that is not there: no hub id to download
        parent = next((p for p in local.parents if p.is_dir()), Path("."))
        return (
            f"{name}: no such folder (the closest existing folder is {parent}); give a model "
            f"folder, a hub id ORG/NAME or packaged:NAME"
        )
    offline = _hub_offline()
    folder = f"./models/{name.split('/')[-1]}"
    if setting is None:
        use = f"name {folder} instead of {name!r}"
    elif ".json:" in setting:  # FILE.json:KEY, a file's key (a LoRA folder's base model)
        file, key = setting.rsplit(":", 1)
        use = f"set {key} in {file} to {folder}"
    elif setting.startswith("--"):  # a command-line option
        use = f"pass `{setting} {folder}`"
    else:
        use = f"pass `--set {setting}={folder}`"
    return (
        f"could not load {name!r} from the Hugging Face hub"
        f"{' (HF_HUB_OFFLINE=1)' if offline else ' (is the hub reachable?)'}: {exc}\n"
        f"Point at a local copy instead: on a machine with access run "
        f"`hf download {name} --local-dir {folder}`, copy that folder here and {use} "
        f"(or set HF_HOME to a cache that holds it). The embedded default needs no download: "
        f"`packaged:multilingual-e5-small`."
    )
