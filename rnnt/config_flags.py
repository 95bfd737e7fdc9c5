"""absl flags from config dataclasses, without defining any at import.

A field becomes a flag of the same name, type, default and help (`rnnt.config.described`).
`rnnt/flags.py` defines the toolkit's flags with it; a tool with a config of its own (the
demo corpus generator) defines just that config's flags, so it need not import the toolkit's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from absl import flags

C = TypeVar("C")

_DEFINERS: dict[type, Callable[..., Any]] = {
    bool: flags.DEFINE_bool,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    str: flags.DEFINE_string,
}
_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def define_config_flags(cls: type) -> dict[str, flags.FlagHolder[Any]]:
    """One flag per field of `cls` (fields marked `flag: False` excepted), by field name."""
    holders = {}
    for field in dataclasses.fields(cls):
        if not field.metadata.get("flag", True):
            continue
        kind = _TYPES[field.type] if isinstance(field.type, str) else field.type
        holders[field.name] = _DEFINERS[kind](field.name, field.default, field.metadata["help"])
    return holders


def config_from_holders(cls: type[C], holders: dict[str, flags.FlagHolder[Any]]) -> C:
    """`cls` with every flagged field taken from its flag's value."""
    return cls(**{name: holder.value for name, holder in holders.items()})
