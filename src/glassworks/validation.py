"""Validated config dataclasses: the one place where config values are type- and range-checked.

Every config object of the library (data sources, tokenizer, model sizes, explain budgets) is a
dataclass deriving from :class:`Validated`. Hydra instantiates them from ``_target_`` before any
MLflow run exists, so a bad value fails fast with a :class:`ConfigError` naming the key.

This is the one validation style: a config object is a ``Validated`` dataclass whose
:meth:`Validated.validate` calls :meth:`Validated.require`; everything a user can get wrong
surfaces as a :class:`UserError` (``ConfigError``, ``DataError`` or a plain ``UserError`` for
run ids and cross-group rules), which the entry points turn into one line on stderr.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


class UserError(Exception):
    """Bad input from the user (config, data, a run id): the one path for user-facing errors.

    Entry points print its message as one line and exit 2 (``debug=traceback`` shows the
    traceback); the message names the key, file or row. :class:`ConfigError` and
    :class:`glassworks.data.errors.DataError` are its kinds.
    """


class ConfigError(UserError, ValueError):
    """A config value is invalid. ``key`` is the offending field (dotted when nested)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    if tp is Any:
        return True
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in get_args(tp))
    if origin is Literal:
        return value in get_args(tp)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, Sequence, typing.Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            # OmegaConf ListConfig is a Sequence; plain strings are not lists here.
            return False
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return not args or all(_matches(v, args[0]) for v in value)
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def check_type(key: str, value: Any, tp: Any) -> None:
    """ConfigError naming ``key`` unless ``value`` is of the annotated type ``tp``."""
    if not _matches(value, tp):
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


class Validated:
    """Mixin: checks every annotated field's type, then runs :meth:`validate` for ranges and
    cross-field rules. Subclasses raise :class:`ConfigError` (via :meth:`require`)."""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            tp = hints.get(field.name, Any)
            check_type(field.name, value, tp)
            if tp is float and isinstance(value, int):
                object.__setattr__(self, field.name, float(value))
            elif isinstance(value, Sequence) and not isinstance(value, (str, bytes, tuple, list)):
                object.__setattr__(self, field.name, list(value))
        self.validate()

    def validate(self) -> None:
        """Range and cross-field checks; override in subclasses."""

    @staticmethod
    def require(condition: bool, key: str, message: str) -> None:
        if not condition:
            raise ConfigError(key, message)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers only, so the result can live in a ``weights_only`` checkpoint."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]
