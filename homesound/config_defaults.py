"""Command-line defaults read from the configuration dataclasses, so a default is never written twice."""

from __future__ import annotations

import dataclasses
from typing import Any


def default_of(config: type, name: str) -> Any:
    """The default value `config` (a dataclass) gives its field `name`."""
    field = next((f for f in dataclasses.fields(config) if f.name == name), None)
    if field is None:
        raise AttributeError(f"{config.__name__} has no field {name!r}")
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ValueError(f"{config.__name__}.{name} has no default")
