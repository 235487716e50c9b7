"""Segment's roles (§20.2) as data: which areas each one reads and changes, and which kind of
resource a grant of it names.

An *area* is a part of the workspace the REST API's routes belong to (api/areas.py maps each
route to one). Roles are additive, so a role lists only what it adds; Workspace Owner is not
expressed through areas at all: an owner may do everything (``Principal.owner``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Area = Literal[
    "workspace",  # settings, Privacy Portal, consent categories, data retention: owners only
    "sources",  # sources and their destinations, filters, mappings, schema, transformations…
    "warehouses",
    "tracking_plans",
    "functions",
    "unify",  # spaces, profile sources, insights, profile uploads, access tokens
    "identity",  # a space's identity resolution settings
    "engage",  # audiences, computed and SQL traits, journeys, subscriptions
    "privacy",  # End User Privacy: regulations, suppressions, data deletion
    "iam",  # users, groups, tokens, labels
    "audit",
]
AREAS: Final[tuple[Area, ...]] = (
    "workspace",
    "sources",
    "warehouses",
    "tracking_plans",
    "functions",
    "unify",
    "identity",
    "engage",
    "privacy",
    "iam",
    "audit",
)

ResourceType = Literal["WORKSPACE", "SOURCE", "SPACE", "WAREHOUSE", "FUNCTION"]
RESOURCE_TYPES: Final[tuple[ResourceType, ...]] = (
    "WORKSPACE",
    "SOURCE",
    "SPACE",
    "WAREHOUSE",
    "FUNCTION",
)


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    description: str
    scope: ResourceType  # what a grant names besides the whole workspace
    reads: frozenset[Area] = frozenset()
    writes: frozenset[Area] = frozenset()  # each also read
    labels: bool = False  # whether a grant may be restricted by labels (§20.4)

    def can(self, area: Area, write: bool) -> bool:
        return area in self.writes or (not write and area in self.reads)


def _areas(*names: Area) -> frozenset[Area]:
    return frozenset(names)


WORKSPACE_OWNER: Final = "workspace-owner"
WORKSPACE_MEMBER: Final = "workspace-member"

ROLES: Final[dict[str, Role]] = {
    role.id: role
    for role in (
        Role(
            WORKSPACE_OWNER,
            "Workspace Owner",
            "Full read and edit access to everything, including settings, team permissions, "
            "tokens, labels, the Privacy Portal and the Audit Trail; PII Access.",
            "WORKSPACE",
        ),
        Role(
            WORKSPACE_MEMBER,
            "Workspace Member",
            "Only what the member's other roles grant (Minimal Workspace Access).",
            "WORKSPACE",
        ),
        Role(
            "source-admin",
            "Source Admin",
            "Edit sources, their settings, connected destinations, schema, transformations, "
            "debugger and write keys.",
            "SOURCE",
            writes=_areas("sources"),
            labels=True,
        ),
        Role(
            "source-read-only",
            "Source Read-only",
            "Read sources, their settings, destinations, schema, transformations and debugger.",
            "SOURCE",
            reads=_areas("sources"),
            labels=True,
        ),
        Role(
            "function-admin",
            "Function Admin",
            "Create, edit and delete functions.",
            "FUNCTION",
            writes=_areas("functions"),
        ),
        Role(
            "function-read-only",
            "Function Read-only",
            "Read functions.",
            "FUNCTION",
            reads=_areas("functions"),
        ),
        Role(
            "end-user-privacy-admin",
            "End User Privacy Admin",
            "End User Privacy settings: regulations (suppression and deletion), data deletion.",
            "WORKSPACE",
            writes=_areas("privacy"),
        ),
        Role(
            "identity-admin",
            "Identity Admin",
            "Edit the identity resolution settings of spaces; read spaces.",
            "SPACE",
            reads=_areas("unify"),
            writes=_areas("identity"),
        ),
        Role(
            "unify-and-engage-admin",
            "Unify and Engage Admin",
            "Edit spaces, their profiles, identity settings, audiences, traits and journeys.",
            "SPACE",
            writes=_areas("unify", "identity", "engage"),
            labels=True,
        ),
        Role(
            "unify-and-engage-read-only",
            "Unify and Engage Read-only",
            "Read spaces, profiles, audiences, traits and journeys.",
            "SPACE",
            reads=_areas("unify", "identity", "engage"),
            labels=True,
        ),
        Role(
            "unify-read-only",
            "Unify Read-only",
            "Read spaces, their profile sources, identity settings and profiles.",
            "SPACE",
            reads=_areas("unify", "identity"),
            labels=True,
        ),
        Role(
            "engage-user",
            "Engage User",
            "Create and edit audiences, traits and journeys; read spaces.",
            "SPACE",
            reads=_areas("unify", "identity"),
            writes=_areas("engage"),
            labels=True,
        ),
        Role(
            "tracking-plan-admin",
            "Tracking Plan Admin",
            "Edit every tracking plan.",
            "WORKSPACE",
            writes=_areas("tracking_plans"),
        ),
        Role(
            "tracking-plan-read-only",
            "Tracking Plan Read-only",
            "Read every tracking plan.",
            "WORKSPACE",
            reads=_areas("tracking_plans"),
        ),
        Role(
            "warehouse-destination-admin",
            "Warehouse Destination Admin",
            "Create, edit and sync warehouses.",
            "WAREHOUSE",
            writes=_areas("warehouses"),
        ),
        Role(
            "warehouse-destination-read-only",
            "Warehouse Destination Read-only",
            "Read warehouses and their syncs.",
            "WAREHOUSE",
            reads=_areas("warehouses"),
        ),
    )
}
