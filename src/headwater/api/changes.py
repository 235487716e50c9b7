"""PATCH bodies: a field left out keeps its value; a null is refused, never stored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator


class NoNulls(BaseModel):
    """Base of every PATCH body: there is no "no name" or "no trigger" to set."""

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null (leave the field out to keep it)")
        return value
