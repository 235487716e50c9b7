"""Protocols Transformations (Segment's ``protocols/transform`` and the Public API's model)."""

from __future__ import annotations

from headwater.protocols.transformations.apply import (
    Compiled,
    Scope,
    Transformations,
    compile_transformation,
    hash_value,
)
from headwater.protocols.transformations.model import (
    FqlDefinedProperty,
    HashPropertiesConfiguration,
    PropertyRename,
    PropertyValueTransformation,
    Transformation,
    from_api,
    standard_matcher,
    to_input,
    updated,
)

__all__ = [
    "Compiled",
    "FqlDefinedProperty",
    "HashPropertiesConfiguration",
    "PropertyRename",
    "PropertyValueTransformation",
    "Scope",
    "Transformation",
    "Transformations",
    "compile_transformation",
    "from_api",
    "hash_value",
    "standard_matcher",
    "to_input",
    "updated",
]
