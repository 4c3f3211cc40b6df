"""Typed settings from environment variables: one parser for every settings dataclass.

The node (``KVNODE_*``) and the operator (``RINGKV_OPERATOR_*``) both describe their settings as a
frozen dataclass whose field ``x`` is read from ``<PREFIX>X``. This module turns a mapping of
variables into such a dataclass: a missing variable keeps the field's default (a field without
default is required), and a malformed value raises ValueError naming the variable. Pure: it
reads the mapping it is given, never ``os.environ``.

Supported field types: ``str``, ``int``, ``float``, ``X | None`` (empty string means None) and
``tuple[str, ...]`` (comma-separated, blanks dropped).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_env(cls: type[T], env: Mapping[str, str], *, prefix: str) -> T:
    """Build ``cls`` (a dataclass) from the ``prefix``-ed variables in ``env``."""
    hints = typing.get_type_hints(cls)
    values: dict[str, object] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = prefix + f.name.upper()
        raw = env.get(name)
        if raw is None:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{name} is required")
            continue
        values[f.name] = parse_value(raw.strip(), hints[f.name], name=name)
    built: T = cls(**values)
    return built


def parse_value(raw: str, hint: Any, *, name: str) -> object:
    """``raw`` as the type ``hint``; ValueError names ``name`` when it does not parse."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if raw == "":
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    try:
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
    except ValueError:
        kind = getattr(hint, "__name__", hint)
        raise ValueError(f"{name}={raw!r} is not a valid {kind}") from None
    return raw
