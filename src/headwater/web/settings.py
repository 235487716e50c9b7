"""The Settings pages (§20, §21): team members and their roles, invites, Segment's roles, groups,
labels, Public API tokens and the audit trail.

Every read and change goes through the REST API in process (``/api/v1/users``, ``/invites``,
``/groups``, ``/labels``, ``/tokens``, ``/audit-events``), so its owner-only checks, errors and
audit records hold here too. A secret the API answers once (an invite link, a token) is shown on
the page that answers the form, never in an address or a later page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.iam.roles import ROLES, Area
from headwater.web.inprocess import Answer
from headwater.web.sessions import Session

if TYPE_CHECKING:
    from headwater.web.app import WebApp

AUDIT_ROWS = 50
# The Settings tabs, with the area each needs (the account tab is every signed-in person's).
TABS: list[tuple[str, str, str, Area | None]] = [
    ("users", "Users", "/settings/users", "iam"),
    ("groups", "Groups", "/settings/groups", "iam"),
    ("roles", "Roles", "/settings/roles", "iam"),
    ("labels", "Labels", "/settings/labels", "iam"),
    ("tokens", "Access tokens", "/settings/tokens", "iam"),
    ("audit", "Audit trail", "/settings/audit", "audit"),
    ("account", "My account", "/settings/account", None),
]
ALL_RESOURCES = "WORKSPACE"


@dataclass(frozen=True)
class Choices:
    """What the role and scope pickers offer: every role, and the workspace, each source and
    each label (a grant on resources carrying it)."""

    roles: list[tuple[str, str]]
    scopes: list[tuple[str, str]]
    source_names: dict[str, str]


class SettingsPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        return [
            *self.web.page_routes(
                "iam",
                [
                    ("GET", "/settings", self.index),
                    ("GET", "/settings/users", self.users_page),
                    ("POST", "/settings/invites", self.invite),
                    ("POST", "/settings/invites/{invite}/revoke", self.revoke_invite),
                    ("GET", "/settings/users/{user}", self.member_page),
                    ("POST", "/settings/users/{user}/roles", self.change_roles),
                    ("POST", "/settings/users/{user}/remove", self.remove_member),
                    ("GET", "/settings/roles", self.roles_page),
                    ("GET", "/settings/groups", self.groups_page),
                    ("POST", "/settings/groups", self.create_group),
                    ("POST", "/settings/groups/{group}/delete", self.delete_group),
                    ("GET", "/settings/labels", self.labels_page),
                    ("POST", "/settings/labels", self.create_label),
                    ("POST", "/settings/labels/{key}/{value}/delete", self.delete_label),
                    ("GET", "/settings/tokens", self.tokens_page),
                    ("POST", "/settings/tokens", self.create_token),
                    ("POST", "/settings/tokens/{token}/revoke", self.revoke_token),
                ],
            ),
            *self.web.page_routes("audit", [("GET", "/settings/audit", self.audit_page)]),
        ]

    def _render(
        self,
        template: str,
        tab: str,
        context: dict[str, Any],
        session: Session,
        *,
        status: int = 200,
    ) -> Response:
        return self.web.render(
            template,
            {
                **context,
                "tabs": visible_tabs(session.principal),
                "tab": tab,
                "current": "/settings",
            },
            status=status,
            session=session,
        )

    async def index(self, request: Request, session: Session, principal: Principal) -> Response:
        return self.web.see_other("/settings/users")

    # --- roles and scopes -------------------------------------------------------------------

    async def _choices(self, principal: Principal) -> Choices | Answer:
        sources = await self.api.call(
            "GET", "/api/v1/sources", principal, params={"pagination.count": 1000}
        )
        if sources.status != 200:
            return sources
        labels = await self.api.call("GET", "/api/v1/labels", principal)
        if labels.status != 200:
            return labels
        names = {s["id"]: s["name"] for s in sources.data.get("sources", [])}
        scopes = [(ALL_RESOURCES, "All current and future resources")]
        scopes += [(f"SOURCE:{i}", f"Source: {n}") for i, n in names.items()]
        scopes += [
            (f"LABEL:{x['key']}:{x['value']}", f"Resources labeled {x['key']}:{x['value']}")
            for x in labels.data.get("labels", [])
        ]
        roles = [(r.id, r.name) for r in ROLES.values()]
        return Choices(roles, scopes, names)

    def _grants_shown(self, permissions: list[dict[str, Any]], choices: Choices) -> list[str]:
        """A holder's grants as lines: "Source Admin — Source: web"."""
        shown = []
        for permission in permissions:
            for resource in permission["resources"]:
                shown.append(f"{permission['roleName']} — {_scope_shown(resource, choices)}")
        return shown

    # --- users and invites ------------------------------------------------------------------

    async def users_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._users(session, principal)

    async def _users(
        self,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str] | None = None,
        error: str | None = None,
        link: str | None = None,
        status: int = 200,
    ) -> Response:
        choices = await self._choices(principal)
        if isinstance(choices, Answer):
            return self.web.refused(choices, session)
        users = await self.api.call("GET", "/api/v1/users", principal)
        if users.status != 200:
            return self.web.refused(users, session)
        invites = await self.api.call("GET", "/api/v1/invites", principal)
        if invites.status != 200:
            return self.web.refused(invites, session)
        members = [
            {**u, "grants": self._grants_shown(u["permissions"], choices)}
            for u in users.data["users"]
        ]
        pending = [
            {**i, "grants": self._grants_shown(i["permissions"], choices)}
            for i in invites.data["invites"]
        ]
        return self._render(
            "settings_users.html",
            "users",
            {
                "members": members,
                "invites": pending,
                "choices": choices,
                "form": form or {"email": "", "role": "", "scope": ALL_RESOURCES},
                "error": error,
                "link": link,
            },
            session,
            status=status if error is None else max(status, 400),
        )

    async def invite(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        fields = _fields(form, "email", "role", "scope")
        if not fields["email"]:
            return await self._users(session, principal, form=fields, error="Enter an email.")
        permissions = _permission_input(fields["role"], fields["scope"])
        if isinstance(permissions, str):
            return await self._users(session, principal, form=fields, error=permissions)
        answer = await self.api.call(
            "POST",
            "/api/v1/invites",
            principal,
            body={"email": fields["email"], "permissions": permissions},
        )
        if answer.status != 201:
            return await self._users(
                session, principal, form=fields, error=answer.error, status=answer.form_status
            )
        link = self.web.public_url(request) + answer.data["path"]
        return await self._users(session, principal, link=link)

    async def revoke_invite(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        if await self.web.posted_form(request, session) is None:
            return self.web.forbidden(session)
        invite = _segment(request.path_params["invite"])
        answer = await self.api.call("DELETE", f"/api/v1/invites/{invite}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other("/settings/users")

    async def member_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._member(request, session, principal)

    async def _member(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str] | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> Response:
        user = _segment(request.path_params["user"])
        found = await self.api.call("GET", f"/api/v1/users/{user}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        choices = await self._choices(principal)
        if isinstance(choices, Answer):
            return self.web.refused(choices, session)
        member = found.data["user"]
        grants = [
            f"{p['roleName']} — {_scope_shown(r, choices)}"
            for p in member["permissions"]
            for r in p["resources"]
        ]
        return self._render(
            "settings_member.html",
            "users",
            {
                "member": member,
                "grants": grants,
                "choices": choices,
                "form": form or {"role": "", "scope": ALL_RESOURCES},
                "error": error,
            },
            session,
            status=status if error is None else max(status, 400),
        )

    async def change_roles(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        """``add`` one role on one scope, or ``remove`` the grant at ``index``: the member's
        whole list is sent back (the API replaces it)."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        user = _segment(request.path_params["user"])
        found = await self.api.call("GET", f"/api/v1/users/{user}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        current = _flattened(found.data["user"]["permissions"])
        fields = _fields(form, "action", "role", "scope", "index")
        if fields["action"] == "remove":
            index = int(fields["index"]) if fields["index"].isdigit() else -1
            if not 0 <= index < len(current):
                return await self._member(
                    request, session, principal, error="That role is not the member's any more."
                )
            del current[index]
        else:
            added = _permission_input(fields["role"], fields["scope"])
            if isinstance(added, str):
                return await self._member(request, session, principal, form=fields, error=added)
            current += added
        answer = await self.api.call(
            "PUT", f"/api/v1/users/{user}/permissions", principal, body={"permissions": current}
        )
        if answer.status != 200:
            return await self._member(
                request,
                session,
                principal,
                form=fields,
                error=answer.error,
                status=answer.form_status,
            )
        return self.web.see_other(f"/settings/users/{user}")

    async def remove_member(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        if await self.web.posted_form(request, session) is None:
            return self.web.forbidden(session)
        user = _segment(request.path_params["user"])
        answer = await self.api.call("DELETE", f"/api/v1/users/{user}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other("/settings/users")

    # --- roles ------------------------------------------------------------------------------

    async def roles_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        roles = [
            {
                "name": r.name,
                "description": r.description,
                "scope": r.scope,
                "edits": sorted(r.writes),
                "reads": sorted(r.reads - r.writes),
                "labels": r.labels,
            }
            for r in ROLES.values()
        ]
        return self._render("settings_roles.html", "roles", {"roles": roles}, session)

    # --- groups -----------------------------------------------------------------------------

    async def groups_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._groups(session, principal, name="", error=None)

    async def _groups(
        self,
        session: Session,
        principal: Principal,
        *,
        name: str,
        error: str | None,
        status: int = 200,
    ) -> Response:
        answer = await self.api.call("GET", "/api/v1/groups", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        choices = await self._choices(principal)
        if isinstance(choices, Answer):
            return self.web.refused(choices, session)
        groups = [
            {**g, "grants": self._grants_shown(g["permissions"], choices)}
            for g in answer.data["userGroups"]
        ]
        return self._render(
            "settings_groups.html",
            "groups",
            {"groups": groups, "name": name, "error": error},
            session,
            status=status if error is None else max(status, 400),
        )

    async def create_group(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        name = str(form.get("name", "")).strip()
        if not name:
            return await self._groups(session, principal, name=name, error="Enter a name.")
        answer = await self.api.call("POST", "/api/v1/groups", principal, body={"name": name})
        if answer.status != 201:
            return await self._groups(
                session, principal, name=name, error=answer.error, status=answer.form_status
            )
        return self.web.see_other("/settings/groups")

    async def delete_group(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        if await self.web.posted_form(request, session) is None:
            return self.web.forbidden(session)
        group = _segment(request.path_params["group"])
        answer = await self.api.call("DELETE", f"/api/v1/groups/{group}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other("/settings/groups")

    # --- labels -----------------------------------------------------------------------------

    async def labels_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._labels(session, principal, form=None, error=None)

    async def _labels(
        self,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str] | None,
        error: str | None,
        status: int = 200,
    ) -> Response:
        answer = await self.api.call("GET", "/api/v1/labels", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self._render(
            "settings_labels.html",
            "labels",
            {
                "labels": answer.data["labels"],
                "form": form or {"key": "", "value": "", "description": ""},
                "error": error,
            },
            session,
            status=status if error is None else max(status, 400),
        )

    async def create_label(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        fields = _fields(form, "key", "value", "description")
        answer = await self.api.call("POST", "/api/v1/labels", principal, body={"label": fields})
        if answer.status != 201:
            return await self._labels(
                session, principal, form=fields, error=answer.error, status=answer.form_status
            )
        return self.web.see_other("/settings/labels")

    async def delete_label(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        if await self.web.posted_form(request, session) is None:
            return self.web.forbidden(session)
        key = _segment(request.path_params["key"])
        value = _segment(request.path_params["value"])
        answer = await self.api.call("DELETE", f"/api/v1/labels/{key}/{value}", principal)
        if answer.status == 409:  # in use: say so on the list, by the label
            return await self._labels(session, principal, form=None, error=answer.error, status=409)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other("/settings/labels")

    # --- tokens -----------------------------------------------------------------------------

    async def tokens_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._tokens(session, principal)

    async def _tokens(
        self,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str] | None = None,
        error: str | None = None,
        created: dict[str, Any] | None = None,
        status: int = 200,
    ) -> Response:
        answer = await self.api.call("GET", "/api/v1/tokens", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        choices = await self._choices(principal)
        if isinstance(choices, Answer):
            return self.web.refused(choices, session)
        tokens = [
            {**t, "grants": self._grants_shown(t["permissions"], choices)}
            for t in answer.data["tokens"]
        ]
        return self._render(
            "settings_tokens.html",
            "tokens",
            {
                "tokens": tokens,
                "choices": choices,
                "form": form or {"description": "", "role": "", "scope": ALL_RESOURCES},
                "error": error,
                "created": created,
            },
            session,
            status=status if error is None else max(status, 400),
        )

    async def create_token(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        fields = _fields(form, "description", "role", "scope")
        if not fields["description"]:
            return await self._tokens(session, principal, form=fields, error="Enter a description.")
        permissions = _permission_input(fields["role"], fields["scope"])
        if isinstance(permissions, str):
            return await self._tokens(session, principal, form=fields, error=permissions)
        answer = await self.api.call(
            "POST",
            "/api/v1/tokens",
            principal,
            body={
                "description": fields["description"],
                "permissions": permissions,
                "piiAccess": form.get("pii") == "on",
            },
        )
        if answer.status != 201:
            return await self._tokens(
                session, principal, form=fields, error=answer.error, status=answer.form_status
            )
        return await self._tokens(session, principal, created=answer.data["token"])

    async def revoke_token(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        if await self.web.posted_form(request, session) is None:
            return self.web.forbidden(session)
        token = _segment(request.path_params["token"])
        answer = await self.api.call("DELETE", f"/api/v1/tokens/{token}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other("/settings/tokens")

    # --- the audit trail --------------------------------------------------------------------

    async def audit_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        query = request.query_params
        filters = {
            name: query.get(name, "").strip()[:200]
            for name in ("actor", "type", "resourceType", "resourceId")
        }
        params: dict[str, Any] = {k: v for k, v in filters.items() if v}
        params["pagination.count"] = AUDIT_ROWS
        cursor = query.get("cursor", "")[:500]
        if cursor:
            params["pagination.cursor"] = cursor
        answer = await self.api.call("GET", "/api/v1/audit-events", principal, params=params)
        if answer.status != 200:
            return self.web.refused(answer, session)
        actors = await self._actors(principal)
        events = [
            {
                **e,
                "actorShown": e.get("actorEmail") or actors.get(e["actor"], e["actor"]),
                "beforeJson": _json(e.get("before")),
                "afterJson": _json(e.get("after")),
            }
            for e in answer.data["auditEvents"]
        ]
        following = answer.data["pagination"].get("next")
        older = None
        if following:
            older = "/settings/audit?" + urlencode(
                {**{k: v for k, v in filters.items() if v}, "cursor": following}
            )
        return self._render(
            "settings_audit.html",
            "audit",
            {
                "events": events,
                "filters": filters,
                "actors": sorted(actors.items(), key=lambda item: item[1].lower()),
                "older": older,
            },
            session,
        )

    async def _actors(self, principal: Principal) -> dict[str, str]:
        """Who can appear as an actor, by id: the admin token, members and tokens (whichever
        the caller may list)."""
        actors = {"admin": "Admin token"}
        users = await self.api.call("GET", "/api/v1/users", principal)
        for user in users.data.get("users", []) if users.status == 200 else []:
            actors[user["id"]] = user["email"]
        tokens = await self.api.call("GET", "/api/v1/tokens", principal)
        for token in tokens.data.get("tokens", []) if tokens.status == 200 else []:
            actors[token["id"]] = f"Token: {token['description']}"
        return actors


def visible_tabs(principal: Principal | None) -> list[tuple[str, str, str]]:
    """The Settings tabs this person's role opens: (key, label, href)."""
    return [
        (key, label, href)
        for key, label, href, area in TABS
        if area is None or (principal is not None and principal.allows(area, False))
    ]


def _fields(form: FormData, *names: str) -> dict[str, str]:
    return {name: str(form.get(name, "")).strip() for name in names}


def _segment(value: str) -> str:
    """A path parameter passed on to the API as one segment, whatever it holds."""
    return quote(value, safe="")


def _permission_input(role: str, scope: str) -> list[dict[str, Any]] | str:
    """One PermissionInputV1 item from the pickers, or what is wrong with them."""
    if role not in ROLES:
        return "Choose a role."
    if scope == ALL_RESOURCES:
        resource: dict[str, Any] = {"type": "WORKSPACE"}
    elif scope.startswith("SOURCE:") and len(scope) > len("SOURCE:"):
        resource = {"id": scope.removeprefix("SOURCE:"), "type": "SOURCE"}
    elif scope.startswith("LABEL:") and scope.count(":") == 2:
        _, key, value = scope.split(":")
        resource = {"type": "WORKSPACE", "labels": [{"key": key, "value": value}]}
    else:
        return "Choose what the role applies to."
    return [{"roleId": role, "resources": [resource]}]


def _flattened(permissions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PermissionV1 items (one a role) as PermissionInputV1 items, one a grant, in the order
    the member page lists them."""
    items = []
    for permission in permissions:
        for resource in permission["resources"]:
            sent: dict[str, Any] = {"type": resource["type"]}
            if resource["type"] != "WORKSPACE":
                sent["id"] = resource["id"]
            if resource.get("labels"):
                sent["labels"] = [
                    {"key": x["key"], "value": x["value"]} for x in resource["labels"]
                ]
            items.append({"roleId": permission["roleId"], "resources": [sent]})
    return items


def _scope_shown(resource: dict[str, Any], choices: Choices) -> str:
    labels = resource.get("labels") or []
    if resource["type"] == "WORKSPACE":
        if labels:
            return "Resources labeled " + ", ".join(f"{x['key']}:{x['value']}" for x in labels)
        return "All current and future resources"
    if resource["type"] == "SOURCE":
        return f"Source: {choices.source_names.get(resource['id'], resource['id'])}"
    return f"{resource['type'].capitalize()}: {resource['id']}"


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
