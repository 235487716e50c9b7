"""Who is asking, what they were granted, and the decision whether they may (§20.1, §20.4).

The decision is pure: the REST API builds a ``Principal`` from the request's credentials and
the stores' grants, and asks ``allows`` before a route runs. Roles are additive and the highest
access wins, so a principal may do what any one of its grants (its own or its groups') allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from headwater.iam.roles import ROLES, WORKSPACE_OWNER, Area, ResourceType

Label = tuple[str, str]  # (key, value)
PrincipalKind = Literal["admin", "token", "user"]


@dataclass(frozen=True)
class Resource:
    """The one thing a route reads or changes, as permissions see it: labels only on sources
    and spaces."""

    type: ResourceType
    id: str
    labels: tuple[Label, ...] = ()


@dataclass(frozen=True)
class Grant:
    """One role on one resource: ``resource_id`` None means all current and future resources
    (of ``resource_type``, or of every type for WORKSPACE), narrowed to those carrying all of
    ``labels``."""

    role_id: str
    resource_type: ResourceType = "WORKSPACE"
    resource_id: str | None = None
    labels: tuple[Label, ...] = ()

    @property
    def unrestricted(self) -> bool:
        """Whether the grant covers every resource, including ones not created yet."""
        return self.resource_id is None and not self.labels

    def covers(self, area: Area, write: bool, resource: Resource | None) -> bool:
        role = ROLES.get(self.role_id)
        if role is None or not role.can(area, write):
            return False
        if resource is None:
            # The area as a whole (a list, a creation): any grant reads it; changing it needs
            # a grant over all its resources, as Segment's "all current and future".
            return not write or self.unrestricted
        if not set(self.labels) <= set(resource.labels):
            return False
        if self.resource_type == "WORKSPACE":
            return True
        return self.resource_type == resource.type and self.resource_id in (None, resource.id)


# Where the web app's in-process calls to the REST API carry the signed-in person (an ASGI scope
# key: an HTTP client cannot set one).
PRINCIPAL_SCOPE_KEY = "headwater.principal"


@dataclass(frozen=True)
class Principal:
    """The caller of a request. ``kind``, ``id``, ``name`` and ``email`` are what the Audit
    Trail records as the actor."""

    kind: PrincipalKind
    id: str
    name: str
    email: str | None = None
    owner: bool = False
    pii_access: bool = False
    grants: tuple[Grant, ...] = ()

    def allows(self, area: Area, write: bool, resource: Resource | None = None) -> bool:
        if self.owner:
            return True
        return any(grant.covers(area, write, resource) for grant in self.grants)


def is_owner(grants: tuple[Grant, ...] | list[Grant]) -> bool:
    """Whether the grants hold Workspace Owner (on the workspace: it has no narrower scope)."""
    return any(g.role_id == WORKSPACE_OWNER for g in grants)
