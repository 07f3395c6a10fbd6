"""Typed options: build a dataclass from YAML values, checking each one against its annotation.

The run config sections (:mod:`xalign.config`) and the option dataclasses of objectives and
tasks (``Objective.Config`` / ``Task.Config``, through :func:`build_dataclass`) are checked
here, so a bad value fails when the config loads, with its dotted key and where it came from,
instead of as a ``TypeError`` deep inside training.

Annotations understood: ``Any``, ``bool``, ``int``, ``float``, ``str``, ``None``, unions
(``X | None``), ``list[X]``/``tuple[X, ...]``/``set[X]``, ``dict[K, V]``, ``Literal[...]``,
``pathlib.Path``, enums and nested dataclasses; any other class is checked with
``isinstance``, and typing constructs not listed are passed through unchecked.

Coercions (everything else is an error):

- ``int``: an integral float (``2.0`` -> 2) or a numeric string; ``2.5`` and booleans fail.
- ``float``: an int, or a numeric string such as ``"5e-5"``; booleans fail.
- ``bool``: ``true/false`` and the YAML 1.1 words ``yes/no/on/off/y/n`` (any case); numbers
  fail.
- ``str``: strings only; a boolean or number gets a hint to quote it.
- lists: a comma-separated string becomes a list (``"de,fr"`` -> ``["de", "fr"]``).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
import types
import typing
from collections import abc
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any, Literal, Union

from xalign.errors import ConfigError, XalignError

#: Origin lookup: dotted key -> where its value came from ("file.yaml:12", "--set k=v"), or
#: None when the key is not known to come from anywhere (a default).
Origin = Callable[[str], "str | None"]

#: YAML 1.1 boolean words (https://yaml.org/type/bool.html), accepted for ``bool`` options.
YAML11_BOOLS = {
    "y": True,
    "yes": True,
    "on": True,
    "true": True,
    "n": False,
    "no": False,
    "off": False,
    "false": False,
}

_SEQUENCES = (
    list,
    tuple,
    set,
    frozenset,
    abc.Sequence,
    abc.MutableSequence,
    abc.Set,
    abc.MutableSet,
    abc.Collection,
    abc.Iterable,
)
_SETS = (set, frozenset, abc.Set, abc.MutableSet)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


class _Mismatch(Exception):  # noqa: N818 - internal signal, never escapes this module
    """A value that does not fit its annotation; ``path`` is the dotted key (with [i])."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class _Mismatches(_Mismatch):
    """Every bad key of one mapping; a :class:`_Mismatch` (its first problem) to code that
    handles one, e.g. a union trying its next alternative."""

    def __init__(self, problems: list[_Mismatch]) -> None:
        super().__init__(problems[0].path, problems[0].message)
        self.problems = problems


def config_error(messages: list[str]) -> ConfigError:
    """One :class:`ConfigError` for every problem found (one line each, in config order), so a
    user fixes a config in one pass, not one key per run; the lines are kept in its
    ``problems`` attribute for callers that gather errors from several places."""
    text = (
        messages[0]
        if len(messages) == 1
        else f"{len(messages)} problems:\n" + "\n".join(f"  {m}" for m in messages)
    )
    error = ConfigError(text)
    error.problems = list(messages)
    return error


def build_dataclass(
    cls: type,
    values: Mapping[str, Any] | None,
    *,
    where: str,
    key: str = "",
    origin: Origin | None = None,
    texts: Mapping[str, str] | None = None,
) -> Any:
    """Instantiate dataclass ``cls`` from ``values``, checking every value against its field's
    annotation (see the module docstring for the coercions).

    ``where`` says what is being built ("objective 'sinkhorn'", "configs/x.yaml"); ``key`` is
    the dotted prefix of these options in the config ("train", "objectives.sinkhorn"), so a
    message names ``train.lr``; ``origin`` maps a dotted key to the file:line or override it
    came from (used in place of ``where`` when it knows the key). ``texts`` maps dotted keys
    given on the command line to their text: a string option given ``--set k=2024`` gets
    ``"2024"``, not an error.

    Raises :class:`~xalign.errors.ConfigError` for an unknown key, a value of the wrong type,
    or a ``ValueError``/``TypeError`` from the dataclass's own ``__post_init__`` checks.
    """
    return _checked(cls, values, where, key, origin, texts)[0]


def coerce_options(
    cls: type,
    values: Mapping[str, Any] | None,
    *,
    where: str,
    key: str = "",
    origin: Origin | None = None,
    texts: Mapping[str, str] | None = None,
    also_known: Sequence[str] = (),
) -> dict[str, Any]:
    """The given ``values`` coerced to their annotations (only the keys given, not defaults),
    after the same checks as :func:`build_dataclass` (which this runs). ``also_known``: keys
    the caller handles itself (an objective's ``weight``), named in the list of known options
    and "did you mean" hints of an unknown key, never passed to ``cls``."""
    return _checked(cls, values, where, key, origin, texts, also_known)[1]


def _checked(
    cls: type,
    values: Any,
    where: str,
    key: str,
    origin: Origin | None,
    texts: Mapping[str, str] | None,
    also_known: Sequence[str] = (),
) -> tuple[Any, dict[str, Any]]:
    def line(exc: _Mismatch) -> str:
        plain = re.sub(r"\[\d+\]", "", exc.path)
        at = (origin(plain) if origin else None) or where
        return f"{at}: {exc.path}: {exc.message}" if exc.path else f"{at}: {exc.message}"

    try:
        kwargs = _coerce_fields(cls, values, key, texts or {}, also_known)
        return cls(**kwargs), kwargs
    except _Mismatch as exc:
        raise config_error([line(p) for p in getattr(exc, "problems", [exc])]) from None
    except XalignError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {key + ': ' if key else ''}{exc}") from exc


def check_value(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked (and coerced) against ``annotation``; ConfigError naming ``key``."""
    try:
        return _coerce(value, annotation, key)
    except _Mismatch as exc:
        raise ConfigError(f"{exc.path}: {exc.message}") from None


def type_hints(cls: type) -> dict[str, Any]:
    """Resolved field annotations of dataclass ``cls``; unresolvable ones count as ``Any``."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - a forward reference we cannot resolve: do not check it
        return {
            f.name: (Any if isinstance(f.type, str) else f.type) for f in dataclasses.fields(cls)
        }


def describe(tp: Any) -> str:
    """A user-facing name of annotation ``tp`` ("an integer", "a list of strings", ...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return "any value"
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(describe(a) for a in args))
    if origin is Literal:
        return "one of " + ", ".join(show(a) for a in args)
    if origin in _SEQUENCES or tp in (list, tuple, set, frozenset):
        inner = [a for a in args if a is not Ellipsis]
        if len(inner) > 1 and Ellipsis not in args:  # tuple[X, Y]: fixed length
            kinds = set(inner)
            return (
                f"a list of {len(inner)} {_plural(inner[0])}"
                if len(kinds) == 1
                else f"a list of {len(inner)} items ({', '.join(describe(a) for a in inner)})"
            )
        return "a list" + (f" of {_plural(inner[0])}" if inner else "")
    if origin in _MAPPINGS or tp is dict or dataclasses.is_dataclass(tp):
        return "a mapping (key: value)"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "a path"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(show(m.value) for m in tp)
    return f"a {getattr(tp, '__name__', tp)}"


#: Longest :func:`show` text: an error message quotes a value, not a megabyte of it.
SHOW_MAX = 200


def show(value: Any) -> str:
    """``value`` as YAML would write it (null, true, 'text', 2.5, [a, b]), cut to
    :data:`SHOW_MAX` characters."""
    text = _show(value)
    return text if len(text) <= SHOW_MAX else f"{text[: SHOW_MAX - 20]}... ({len(text):,} chars)"


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _plural(tp: Any) -> str:
    names = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
    return names.get(tp, describe(tp))


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _coerce_fields(
    cls: type, values: Any, key: str, texts: Mapping[str, str], also_known: Sequence[str] = ()
) -> dict[str, Any]:
    """Keyword arguments for ``cls``: each given value coerced to its field's annotation
    (``also_known``: further valid keys, for the unknown-key message only)."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise _Mismatch(key, f"expected a mapping of options (key: value), got {show(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = type_hints(cls)
    kwargs: dict[str, Any] = {}
    problems: list[_Mismatch] = []  # every bad key, each named with its own origin
    for name, value in values.items():
        path, annotation = _join(key, name), hints.get(name, Any)
        if name not in fields:
            valid = sorted({*fields, *also_known})
            close = difflib.get_close_matches(str(name), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(
                _Mismatch(path, f"unknown option {str(name)!r}{hint}; known: {', '.join(valid)}")
            )
            continue
        try:
            kwargs[name] = _coerce(value, annotation, path)
        except _Mismatch as exc:
            if path in texts and _accepts_str(annotation):
                kwargs[name] = texts[path]  # --set k=2024 for a string option: the text
            else:
                problems.extend(getattr(exc, "problems", [exc]))  # a nested dataclass's too
    if problems:
        raise _Mismatches(problems)
    return kwargs


def _build(cls: type, values: Any, key: str) -> Any:
    kwargs = _coerce_fields(cls, values, key, {})
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # a nested section's own checks: name its key
        raise _Mismatch(key, str(exc)) from exc


def _fail(value: Any, tp: Any, path: str, note: str = "") -> typing.NoReturn:
    hint = note or _hint(value, tp)
    raise _Mismatch(path, f"expected {describe(tp)}, got {show(value)}{hint}")


def _accepts_str(tp: Any) -> bool:
    if tp is str:
        return True
    return typing.get_origin(tp) in (Union, types.UnionType) and str in typing.get_args(tp)


def _hint(value: Any, tp: Any) -> str:
    if isinstance(value, bool) and _accepts_str(tp):
        word = "true" if value else "false"
        return (
            f' (a YAML boolean: quote the word, "{word}", if you meant text; YAML 1.1 '
            f"tools also read unquoted yes/no/on/off as booleans)"
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _accepts_str(tp):
        return f' (a number: quote it, "{value}", if you meant text)'
    return ""


def _coerce(value: Any, tp: Any, path: str) -> Any:  # noqa: C901 - one branch per kind
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object or isinstance(tp, (typing.TypeVar, str)):
        return value
    if tp is type(None):
        if value is None:
            return None
        _fail(value, tp, path)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):  # its own field errors
            return _coerce(value, inner[0], path)
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, path)
            except _Mismatch:
                continue
        _fail(value, tp, path)
    if origin is Literal:
        for allowed in args:
            if value == allowed and type(value) is type(allowed):
                return value
        _fail(value, tp, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in YAML11_BOOLS:
            return YAML11_BOOLS[value.strip().lower()]
        _fail(value, tp, path)
    if tp is int:
        return _to_int(value, path)
    if tp is float:
        return _to_float(value, path)
    if tp is str:
        if isinstance(value, str):
            return value
        _fail(value, tp, path)
    if origin in _SEQUENCES or tp in (list, tuple, set, frozenset):
        return _to_sequence(value, tp, origin or tp, args, path)
    if origin in _MAPPINGS or tp is dict:
        if not isinstance(value, Mapping):
            _fail(value, tp, path)
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {_coerce(k, kt, path): _coerce(v, vt, _join(path, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        return _build(tp, value, path)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if issubclass(tp, PurePath) and isinstance(value, str):
            return tp(value)
        if issubclass(tp, enum.Enum):
            for member in tp:
                if value in (member.value, member.name):
                    return member
        _fail(value, tp, path)
    return value  # an annotation we do not know how to check (NewType, Protocol, ...)


def _to_int(value: Any, path: str) -> int:
    if isinstance(value, bool):
        _fail(value, int, path)
    if isinstance(value, int):
        return value
    number = value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                _fail(value, int, path)
    if isinstance(number, float):
        if math.isfinite(number) and number.is_integer():
            return int(number)
        _fail(value, int, path, " (not a whole number)")
    _fail(value, int, path)


def _to_float(value: Any, path: str) -> float:
    if isinstance(value, bool):
        _fail(value, float, path)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    _fail(value, float, path)


def _to_sequence(value: Any, tp: Any, kind: Any, args: tuple[Any, ...], path: str) -> Any:
    if isinstance(value, str):
        # "de,fr" -> ["de", "fr"]; "de" -> ["de"] (not ["d", "e"])
        items: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        _fail(value, tp, path)
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(items) != len(args):
            _fail(value, tp, path, f" ({len(items)} items, need {len(args)})")
        out = [
            _coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(items, args, strict=True))
        ]
    else:
        inner = args[0] if args else Any
        out = [_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(items)]
    if kind is tuple:
        return tuple(out)
    if kind in _SETS:
        return (frozenset if kind is frozenset else set)(out)
    return out
