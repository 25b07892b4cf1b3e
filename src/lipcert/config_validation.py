"""Build frozen parameter dataclasses from parsed YAML/JSON dicts, with errors that name the problem.

Every experiment setting of the paper (e.g. supplement B, Table B1: epochs, batch size, learning rate,
p, lambda) is read from ``params/*.yaml`` into a small frozen dataclass with :func:`from_dict`. Keys and
types are checked against the dataclass fields; value ranges are checked in each dataclass's
``__post_init__`` with :func:`check_range`. Errors are ValueErrors that say where (file and section),
which key, what was expected and what was given.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


def check_range(
    name: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    lo_inclusive: bool = True,
    hi_inclusive: bool = True,
) -> float:
    """Raise ValueError naming ``name`` unless ``lo <= value <= hi`` (bounds optional, strict if not inclusive).

    NaN is always out of range. Returns ``value`` so it can be used inline in ``__post_init__``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    below = lo is not None and (value < lo if lo_inclusive else value <= lo)
    above = hi is not None and (value > hi if hi_inclusive else value >= hi)
    if math.isnan(value) or below or above:
        left = f"[{lo!r}" if lo is not None and lo_inclusive else ("(-inf" if lo is None else f"({lo!r}")
        right = f"{hi!r}]" if hi is not None and hi_inclusive else ("inf)" if hi is None else f"{hi!r})")
        interval = f"{left}, {right}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


class _TypeMismatch(Exception):
    """Internal: the value at ``key`` does not match ``expected``."""

    def __init__(self, key: str, expected: str, value: Any) -> None:
        super().__init__(key, expected, value)
        self.key = key
        self.expected = expected
        self.value = value


def _type_name(annotation: Any) -> str:
    """Readable name of a type hint: ``float``, ``tuple[float, ...]``, ``one of ['a', 'b']``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Literal:
        return f"one of {list(args)!r}"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin in (tuple, list, dict):
        inner = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in args)
        return f"{origin.__name__}[{inner}]" if args else origin.__name__
    if dataclasses.is_dataclass(annotation):
        return f"mapping for {annotation.__name__}"
    return getattr(annotation, "__name__", repr(annotation))


def _convert(annotation: Any, value: Any, key: str, where: str) -> Any:
    """Check ``value`` against the type hint ``annotation`` and return it in canonical form."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    if annotation is Any:
        return value
    if annotation is type(None):
        if value is None:
            return None
        raise _TypeMismatch(key, "None", value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _TypeMismatch(key, "bool", value)
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _TypeMismatch(key, "int", value)
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _TypeMismatch(key, "float", value)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _TypeMismatch(key, "str", value)
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        raise _TypeMismatch(key, _type_name(annotation), value)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(option, value, key, where)
            except _TypeMismatch:
                continue
        raise _TypeMismatch(key, _type_name(annotation), value)
    if origin is tuple or origin is list or annotation in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _TypeMismatch(key, _type_name(annotation), value)
        if not args:
            items = list(value)
        elif origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise _TypeMismatch(key, _type_name(annotation), value)
            items = [_convert(arg, item, f"{key}[{i}]", where) for i, (arg, item) in enumerate(zip(args, value))]
        else:
            items = [_convert(args[0], item, f"{key}[{i}]", where) for i, item in enumerate(value)]
        return tuple(items) if (origin is tuple or annotation is tuple) else items
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise _TypeMismatch(key, _type_name(annotation), value)
        if not args:
            return dict(value)
        key_type, value_type = args
        return {
            _convert(key_type, item_key, f"{key}.<key>", where): _convert(value_type, item, f"{key}.{item_key}", where)
            for item_key, item in value.items()
        }
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise _TypeMismatch(key, _type_name(annotation), value)
        own_reader = getattr(annotation, "from_mapping", None)
        if own_reader is not None:
            return own_reader(value, f"{where}.{key}")
        return from_dict(annotation, value, f"{where}.{key}")
    raise TypeError(f"{where}: field {key!r} has a type hint from_dict does not support: {annotation!r}")


def _mismatch_message(where: str, mismatch: _TypeMismatch) -> str:
    message = (
        f"{where}: key {mismatch.key!r} expects {mismatch.expected}, "
        f"got {mismatch.value!r} ({type(mismatch.value).__name__})"
    )
    if isinstance(mismatch.value, str) and "float" in mismatch.expected:
        try:
            float(mismatch.value)
        except ValueError:
            return message
        message += " (YAML 1.1 reads numbers like 1e-3 as strings; write 1.0e-3)"
    return message


def unknown_key_message(where: str, key: str, allowed: list[str], context: str = "") -> str:
    """The error of an unknown ``key``: where, the key, a "did you mean" suggestion and the sorted allowed keys.

    ``context`` (e.g. ``" for loss 'cll'"``) says whose keys ``allowed`` are.
    """
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{where}: unknown key {key!r}{suggestion}{context}; allowed keys: {allowed}"


def from_dict(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build the (possibly nested) dataclass ``cls`` from ``data``, checking keys and types.

    ``where`` names the source in error messages, e.g. ``"params/two_moons.yaml: train"``. Raises
    ValueError for: an unknown key (naming it, with a "did you mean" suggestion and the sorted allowed
    keys), a missing required key, and a value that does not match the field's type hint. Supported
    hints: ``int``, ``float`` (ints accepted and converted), ``bool`` (ints rejected), ``str``,
    ``Literal[...]``, ``tuple[X, ...]``/``tuple[X, Y]``/``list[X]`` (lists and tuples accepted),
    ``dict[K, V]``, ``Optional[X]``/``X | None``, ``Any`` and nested dataclasses (an instance is taken as it is; a
    nested dataclass with a ``from_mapping(data, where)`` classmethod reads its own mapping, e.g.
    :class:`lipcert.run_config.LossConfig` its flat loss section). ValueErrors raised by
    ``cls.__post_init__`` (range checks) are re-raised prefixed with ``where``.
    """
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping of keys to values, got {data!r} ({type(data).__name__})")
    non_string_keys = [key for key in data if not isinstance(key, str)]
    if non_string_keys:
        raise ValueError(f"{where}: keys must be strings, got {non_string_keys!r}")

    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    allowed = sorted(fields)

    for key in data:
        if key not in fields:
            raise ValueError(unknown_key_message(where, key, allowed))

    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in data:
            has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            if not has_default:
                raise ValueError(f"{where}: missing required key {name!r} (expects {_type_name(hints[name])})")
            continue
        try:
            kwargs[name] = _convert(hints[name], data[name], name, where)
        except _TypeMismatch as mismatch:
            raise ValueError(_mismatch_message(where, mismatch)) from None

    try:
        return cls(**kwargs)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
