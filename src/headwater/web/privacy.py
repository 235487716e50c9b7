"""The Privacy pages: regulations (deletion and suppression) with their statuses and a form to
create one, the suppressed users; and, for Workspace Owners, the Privacy Portal's Inbox and
Inventory and the consent categories.

Regulations are area "privacy"; the Portal and consent categories are Workspace Owners' only
(area "workspace", §20.2), so those tabs show only to a role that opens them. Every read and
change goes through the REST API in process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.privacy.regulations import REGULATION_TYPES, SUBJECT_TYPES
from headwater.web.sessions import Session

if TYPE_CHECKING:
    from headwater.web.app import WebApp

MAX_SUBJECTS_TEXT = 100_000
CLASSES = ("RED", "YELLOW", "GREEN")


def subjects_of(text: str) -> list[str]:
    """One subject id a line (commas too), blanks dropped, order kept, each once."""
    found: list[str] = []
    for line in text.replace(",", "\n").splitlines():
        subject = line.strip()
        if subject and subject not in found:
            found.append(subject)
    return found


class PrivacyPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        return [
            *self.web.page_routes(
                "privacy",
                [
                    ("GET", "/privacy", self.regulations_page),
                    ("POST", "/privacy/regulations", self.create_regulation),
                    ("GET", "/privacy/regulations/{regulation}", self.regulation_page),
                ],
            ),
            *self.web.page_routes(
                "workspace",
                [
                    ("GET", "/privacy/portal", self.portal_page),
                    ("GET", "/privacy/consent", self.consent_page),
                    ("POST", "/privacy/consent", self.create_category),
                ],
            ),
        ]

    def _tabs(self, principal: Principal, current: str) -> dict[str, Any]:
        return {
            "owner_tabs": principal.allows("workspace", False),
            "tab": current,
            "current": "/privacy",
        }

    # --- regulations ------------------------------------------------------------------------

    async def regulations_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._regulations(session, principal, form={}, error=None)

    async def create_regulation(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        given = {
            name: str(form.get(name, "")).strip()
            for name in ("regulationType", "subjectType", "subjectIds", "source")
        }
        if len(given["subjectIds"]) > MAX_SUBJECTS_TEXT:
            return await self._regulations(
                session, principal, form=given, error="Send at most 100,000 characters of ids."
            )
        subjects = subjects_of(given["subjectIds"])
        if not subjects:
            return await self._regulations(
                session, principal, form=given, error="Enter at least one subject id."
            )
        path = "/api/v1/regulations"
        if given["source"]:
            path += f"/sources/{quote(given['source'], safe='')}"
        body = {
            "regulationType": given["regulationType"],
            "subjectType": given["subjectType"],
            "subjectIds": subjects,
        }
        answer = await self.api.call("POST", path, principal, body=body)
        if answer.status != 200:
            if answer.status == 403:
                return self.web.not_allowed(session)
            return await self._regulations(
                session, principal, form=given, error=answer.error, status=answer.form_status
            )
        return self.web.see_other(f"/privacy/regulations/{answer.data['regulateId']}")

    async def _regulations(
        self,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str],
        error: str | None,
        status: int = 200,
    ) -> Response:
        answer = await self.api.call(
            "GET", "/api/v1/regulations", principal, params={"pagination.count": 100}
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        suppressed = await self.api.call(
            "GET", "/api/v1/suppressions", principal, params={"pagination.count": 100}
        )
        if suppressed.status != 200:
            return self.web.refused(suppressed, session)
        sources: list[dict[str, Any]] = []
        if principal.allows("sources", False):
            listed = await self.api.call(
                "GET", "/api/v1/sources", principal, params={"pagination.count": 200}
            )
            sources = listed.data.get("sources", []) if listed.status == 200 else []
        return self.web.render(
            "privacy.html",
            {
                "regulations": answer.data["regulations"],
                "total": answer.data["pagination"]["totalEntries"],
                "suppressed": suppressed.data["subjectIds"],
                "sources": sources,
                "types": REGULATION_TYPES,
                "subject_types": SUBJECT_TYPES,
                "form": {
                    "regulationType": form.get("regulationType", "SUPPRESS_WITH_DELETE"),
                    "subjectType": form.get("subjectType", "USER_ID"),
                    "subjectIds": form.get("subjectIds", ""),
                    "source": form.get("source", ""),
                },
                "error": error,
                **self._tabs(principal, "regulations"),
            },
            status=status if error is None else max(status, 400),
            session=session,
        )

    async def regulation_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        regulation = quote(request.path_params["regulation"], safe="")
        answer = await self.api.call("GET", f"/api/v1/regulations/{regulation}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.render(
            "regulation.html",
            {"regulation": answer.data["regulation"], **self._tabs(principal, "regulations")},
            session=session,
        )

    # --- the Privacy Portal (Workspace Owners) ----------------------------------------------

    async def portal_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        inbox = await self.api.call("GET", "/api/v1/privacy/inbox", principal)
        if inbox.status != 200:
            return self.web.refused(inbox, session)
        inventory = await self.api.call("GET", "/api/v1/privacy/inventory", principal)
        if inventory.status != 200:
            return self.web.refused(inventory, session)
        return self.web.render(
            "privacy_portal.html",
            {
                "inbox": inbox.data["fields"],
                "inventory": inventory.data["fields"],
                **self._tabs(principal, "portal"),
            },
            session=session,
        )

    # --- consent categories (Workspace Owners) ----------------------------------------------

    async def consent_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._consent(session, principal, form={}, error=None)

    async def create_category(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        given = {
            name: str(form.get(name, "")).strip() for name in ("categoryId", "name", "destinations")
        }
        body = {
            "categoryId": given["categoryId"],
            "name": given["name"],
            "destinations": [d.strip() for d in given["destinations"].split(",") if d.strip()],
        }
        answer = await self.api.call("POST", "/api/v1/consent/categories", principal, body=body)
        if answer.status != 201:
            return await self._consent(
                session, principal, form=given, error=answer.error, status=answer.form_status
            )
        return self.web.see_other("/privacy/consent")

    async def _consent(
        self,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str],
        error: str | None,
        status: int = 200,
    ) -> Response:
        answer = await self.api.call("GET", "/api/v1/consent/categories", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.render(
            "consent.html",
            {
                "categories": answer.data["categories"],
                "form": {k: form.get(k, "") for k in ("categoryId", "name", "destinations")},
                "error": error,
                **self._tabs(principal, "consent"),
            },
            status=status if error is None else max(status, 400),
            session=session,
        )
