"""The lists a destination instance holds (destination filters, Actions mappings).

Both are checked item by item with errors that name the item (``[2].if: …``, field
``filters.2.if``), and both keep their ids when saved from a config file, which carries none: an
item given without an id takes the id of the item at its position now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from headwater.errors import ItemError, ListError


class _HasId(Protocol):
    id: str


Item = TypeVar("Item", bound=BaseModel)


def check_list(
    raw: Any,
    model: type[Item],
    *,
    kind: str,
    limit: int,
    current: Sequence[_HasId],
    new_id: Callable[[], str],
    check: Callable[[Item], None] = lambda _item: None,
) -> list[Item]:
    """Each item validated by ``model`` and ``check``; ids kept by position or made new."""
    if not isinstance(raw, list):
        raise ListError(f"must be a list of {kind}", kind)
    if len(raw) > limit:
        raise ListError(f"a destination takes at most {limit} {kind}, not {len(raw)}", kind)
    found: list[Item] = []
    for position, item in enumerate(raw):
        try:
            checked = model.model_validate(item)
            check(checked)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            message = (
                str(error["ctx"]["error"]) if "error" in error.get("ctx", {}) else error["msg"]
            )
            raise _placed(kind, position, where, message) from None
        except ItemError as exc:
            raise _placed(kind, position, exc.where, str(exc)) from None
        if not getattr(checked, "id", ""):
            taken = {getattr(f, "id", "") for f in found}
            reuse = current[position].id if position < len(current) else ""
            checked = checked.model_copy(
                update={"id": reuse if reuse and reuse not in taken else new_id()}
            )
        found.append(checked)
    given = [i for i in (getattr(f, "id", "") for f in found) if i]
    if len(set(given)) != len(given):
        raise ListError(f"two {kind} have the same id", kind)
    return found


def _placed(kind: str, position: int, where: str, message: str) -> ListError:
    inside = f".{where}" if where else ""
    return ListError(f"[{position}]{inside}: {message}", f"{kind}.{position}{inside}")
