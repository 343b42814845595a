"""The base of every section of the config schema (unknown keys refused, types strict, no NaN/inf) and a check
sections share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section", "positive"]


class Section(BaseModel):
    """Base of every section: unknown keys refused, types strict, no NaN/inf."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=False)


def positive(value, where: str):
    """``value`` when it is > 0; else a ValueError naming the key's dotted path ``where``."""
    if value <= 0:
        raise ValueError(f"{where} must be > 0, got {value!r}")
    return value
