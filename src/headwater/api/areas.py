"""Which area of the workspace each REST API route reads or changes, and which resource.

A route is known by its path template below ``/api/v1`` (``/sources/{idOrName}/schema``). Its
first segment decides the area, unless a special case (longest template prefix first) says
otherwise. GET and HEAD read; every other method changes, except the previews listed, which
only evaluate what they are sent. A route no entry maps is an error that the tests catch
(tests/api/test_access.py), so a new route cannot slip through unguarded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from headwater.iam.roles import Area, ResourceType

_BY_SEGMENT: Final[dict[str, Area]] = {
    "sources": "sources",
    "destinations": "sources",  # a destination is its source's (§20.2 Source Admin)
    "filters": "sources",
    "transformations": "sources",  # view: Source Read-only; edit: Source Admin (§20.2)
    "catalog": "sources",
    "violations": "sources",
    "warehouses": "warehouses",
    "tracking-plans": "tracking_plans",
    "functions": "functions",
    "spaces": "unify",
    "regulations": "privacy",
    "suppressions": "privacy",
    "privacy": "workspace",  # the Privacy Portal: Workspace Owners only (§20.2)
    "consent": "workspace",  # consent categories: Workspace Owners only
    "workspace": "workspace",
    "roles": "iam",
    "users": "iam",
    "groups": "iam",
    "invites": "iam",
    "tokens": "iam",
    "labels": "iam",
    "audit-events": "audit",
    "audit-forwarding": "audit",
    "overview": "sources",  # Home: every source's and destination's counts
    # Segment's Public API shapes (/segment/v1), where their paths differ from /api/v1's.
    "": "sources",  # Get Workspace
    "destination": "sources",  # /destination/{destinationId}/filters
}

_SPECIAL: Final[dict[str, Area]] = {
    "/sources/{idOrName}/data-deletion": "privacy",
    "/spaces/{idOrName}/deletion": "privacy",
    "/spaces/{idOrName}/identity-settings": "identity",
    "/spaces/{idOrName}/audiences": "engage",
    "/spaces/{idOrName}/computed-traits": "engage",
    "/spaces/{idOrName}/sql-traits": "engage",
    "/spaces/{idOrName}/journeys": "engage",
    "/spaces/{idOrName}/subscription-groups": "engage",
    "/spaces/{idOrName}/subscriptions": "engage",
    "/spaces/{idOrName}/messaging-subscriptions": "engage",
    "/spaces/{spaceId}/audiences": "engage",  # /segment/v1's
}

# POST routes that change nothing: they evaluate the statement or code they are sent.
_PREVIEWS: Final = frozenset(
    {"/filters/preview", "/transformations/preview", "/destination/filters/preview"}
)

# Routes whose path names the resource that permissions are checked against: the template
# prefix, the resource's type, and whether the parameter names a destination (whose source
# is the resource).
_RESOURCES: Final[tuple[tuple[str, ResourceType, bool], ...]] = (
    ("/sources/{idOrName}", "SOURCE", False),
    ("/destinations/{idOrName}", "SOURCE", True),
    ("/spaces/{idOrName}", "SPACE", False),
    ("/warehouses/{idOrName}", "WAREHOUSE", False),
    ("/functions/{idOrName}", "FUNCTION", False),
    # /segment/v1's names for the same parameters
    ("/sources/{sourceId}", "SOURCE", False),
    ("/destinations/{destinationId}", "SOURCE", True),
    ("/destination/{destinationId}", "SOURCE", True),
    ("/spaces/{spaceId}", "SPACE", False),
    ("/warehouses/{warehouseId}", "WAREHOUSE", False),
    ("/functions/{functionId}", "FUNCTION", False),
)
# The bases routes are mounted at: the REST API's and Segment's Public API shapes.
BASES: Final = ("/api/v1", "/segment/v1")


@dataclass(frozen=True)
class RouteAccess:
    area: Area
    write: bool
    resource_type: ResourceType | None = None  # ``parameter`` names one
    via_destination: bool = False
    parameter: str = "idOrName"


def route_access(method: str, template: str) -> RouteAccess | None:
    """What a route needs, from its method and its path template (below ``/api/v1`` or
    ``/segment/v1``); None for a route no entry maps."""
    for base in BASES:
        if template.startswith(base + "/") or template == base:
            template = template.removeprefix(base)
            break
    area = _area(template)
    if area is None:
        return None
    write = method.upper() not in ("GET", "HEAD") and template not in _PREVIEWS
    for prefix, type_, via_destination in _RESOURCES:
        if _under(template, prefix):
            parameter = prefix.rsplit("{", 1)[1].rstrip("}")
            return RouteAccess(area, write, type_, via_destination, parameter)
    return RouteAccess(area, write)


def _area(template: str) -> Area | None:
    for prefix in sorted(_SPECIAL, key=len, reverse=True):
        if _under(template, prefix):
            return _SPECIAL[prefix]
    segment = template.strip("/").split("/", 1)[0]
    return _BY_SEGMENT.get(segment)


def _under(template: str, prefix: str) -> bool:
    return template == prefix or template.startswith(prefix + "/")
