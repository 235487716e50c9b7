"""Masking for readers without PII Access (spec §9.5, §9.8).

The debugger, Event Delivery samples and Profile API answers show a Red or Yellow value as
``MASK`` to a reader without PII Access. A value is masked when its key meets a default or
custom key matcher, when it meets a custom value matcher, or when its path is in the Inventory
and was ever Red or Yellow (re-marking a field Green keeps it masked, §9.5). The key is
checked at any depth, so a profile's flat ``traits.email`` and an event's
``context.traits.email`` are masked alike.

Until roles exist, who has PII Access is decided by the caller: the admin token has it, a
Profile API access token has it unless created with ``piiAccess: false``. Nothing a request
sends (a query parameter) grants it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from headwater.privacy.custom_matchers import CustomMatchers
from headwater.privacy.inventory import Inventory
from headwater.privacy.matchers import Matchers
from headwater.store.workspace import WorkspaceStore

MASK = "**********"


class Masker:
    def __init__(self, matchers: Matchers, masked_paths: Collection[str] = ()) -> None:
        self._matchers = matchers
        self._paths = frozenset(masked_paths)

    @property
    def mask(self) -> str:
        return MASK

    def restricted(self, path: str, value: Any) -> bool:
        if path in self._paths:
            return True
        matchers = self._matchers
        return matchers.classify_key(path) is not None or (
            not isinstance(value, dict | list) and matchers.classify_value(value) is not None
        )

    def event(self, event: Any) -> Any:
        """A copy of a Spec message with every restricted value under ``context``, ``traits``
        and ``properties`` masked; the message itself is never changed."""
        if not isinstance(event, dict):
            return event
        out = dict(event)
        for root in ("context", "traits", "properties"):
            if isinstance(event.get(root), dict):
                out[root] = self._mask(event[root], root)
        return out

    def values(self, values: Any, prefix: str) -> Any:
        """A copy of an object of traits (or properties) found under ``prefix``."""
        return self._mask(values, prefix) if isinstance(values, dict) else values

    def _mask(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                inner = f"{path}.{key}"
                if item is not None and self.restricted(inner, item):
                    out[key] = MASK if not isinstance(item, dict | list) else _masked(item)
                else:
                    out[key] = self._mask(item, inner)
            return out
        if isinstance(value, list):
            return [self._mask(item, f"{path}.$") for item in value]
        return value


def _masked(value: Any) -> Any:
    """A restricted object or array keeps its shape; every value in it is masked."""
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return MASK if value is not None else None


MaskerLookup = Callable[[], Masker]


def load_masker(store: WorkspaceStore) -> Masker:
    """The masker of the workspace's current matchers and Inventory."""
    masked = [f.path for f in Inventory(store).fields() if f.masked]
    return Masker(CustomMatchers(store).matchers(), masked)
