"""The Functions pages: the list (source, destination and insert functions) with a form to
create one, and a function's page: its code editor (save, save & deploy), the test runner,
its versions (view one, restore it) and its logs.

Every read and change goes through ``/api/v1/functions`` in process, so the API's checks (the
workspace's limit, refused code), role checks and audit records hold here too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.functions.contract import KINDS, LANGUAGES
from headwater.iam.access import Principal, Resource
from headwater.web.inprocess import Answer
from headwater.web.sessions import Session

if TYPE_CHECKING:
    from headwater.web.app import WebApp

KIND_NAMES = {
    "source": "Source function",
    "destination": "Destination function",
    "insert": "Insert function",
}
# The code a new function starts with, as Segment's editor offers it.
TEMPLATES: dict[tuple[str, str], str] = {
    ("source", "javascript"): (
        "// Runs on each request to this source's function endpoint.\n"
        "async function onRequest(request, settings) {\n"
        "  const body = await request.json()\n"
        "  Segment.track({ event: body.type, userId: body.userId, properties: body })\n"
        "}\n"
    ),
    ("destination", "javascript"): (
        "// Runs on each event sent to this destination.\n"
        "async function onTrack(event, settings) {\n"
        "  console.log('track', event.event)\n"
        "}\n"
    ),
    ("insert", "javascript"): (
        "// Runs on each event before the destination gets it; return the event to send.\n"
        "async function onTrack(event, settings) {\n"
        "  return event\n"
        "}\n"
    ),
    ("source", "python"): (
        "# Runs on each request to this source's function endpoint.\n"
        "def on_request(request, settings):\n"
        "    body = request.json()\n"
        "    segment.track({'event': body.get('type'), 'userId': body.get('userId')})\n"
    ),
    ("destination", "python"): (
        "# Runs on each event sent to this destination.\n"
        "def on_track(event, settings):\n"
        "    print('track', event.get('event'))\n"
    ),
    ("insert", "python"): (
        "# Runs on each event before the destination gets it; return the event to send.\n"
        "def on_track(event, settings):\n"
        "    return event\n"
    ),
}
SAMPLE_EVENT = {
    "type": "track",
    "event": "Order Completed",
    "userId": "user-1",
    "properties": {"revenue": 42, "currency": "USD"},
}
SAMPLE_REQUEST = {"type": "Order Completed", "userId": "user-1"}
MAX_SAMPLE = 512 * 1024  # characters of a sample event or settings a test may send


class FunctionPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        return self.web.page_routes(
            "functions",
            [
                ("GET", "/functions", self.list_page),
                ("POST", "/functions", self.create),
                ("GET", "/functions/{function}", self.function_page),
                ("POST", "/functions/{function}", self.save),
                ("POST", "/functions/{function}/delete", self.delete),
                ("GET", "/functions/{function}/versions", self.versions_page),
                ("GET", "/functions/{function}/versions/{version}", self.version_page),
                ("POST", "/functions/{function}/versions/{version}/restore", self.restore),
                ("GET", "/functions/{function}/logs", self.logs_page),
            ],
        )

    # --- the list, and creating a function --------------------------------------------------

    async def list_page(self, request: Request, session: Session, principal: Principal) -> Response:
        return await self._list(session, principal, form={}, error=None, field=None)

    async def create(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        given = {k: str(form.get(k, "")).strip() for k in ("name", "kind", "language")}
        if not given["name"]:
            return await self._list(session, principal, form=given, error="Enter a name.")
        kind, language = given["kind"], given["language"] or "javascript"
        body = {
            "name": given["name"],
            "kind": kind,
            "language": language,
            "code": TEMPLATES.get((kind, language), "// code\n"),
        }
        answer = await self.api.call("POST", "/api/v1/functions", principal, body=body)
        if answer.status != 201:
            return await self._list(
                session,
                principal,
                form=given,
                error=answer.error,
                field=_field(answer) or "name",
                status=answer.form_status,
            )
        return self.web.see_other(f"/functions/{answer.data['function']['id']}")

    async def _list(
        self,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str],
        error: str | None,
        field: str | None = "name",
        status: int = 200,
    ) -> Response:
        answer = await self.api.call("GET", "/api/v1/functions", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        functions = answer.data["functions"]
        return self.web.render(
            "functions.html",
            {
                "groups": [
                    (kind, KIND_NAMES[kind], [f for f in functions if f["kind"] == kind])
                    for kind in KINDS
                ],
                "limit": answer.data.get("limit"),
                "count": len(functions),
                "kinds": KIND_NAMES,
                "languages": LANGUAGES,
                "form": {"name": "", "kind": "destination", "language": "javascript", **form},
                "can_create": principal.allows("functions", True),
                "error": error,
                "field": field if error else None,
                "current": "/functions",
            },
            status=status if error is None else max(status, 400),
            session=session,
        )

    # --- one function: the editor and the test runner ---------------------------------------

    async def function_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._editor(request, session, principal)

    async def save(self, request: Request, session: Session, principal: Principal) -> Response:
        """The editor's form: Save, Save & deploy, or Run test (which saves changed code as a
        new version first: the test runner runs LATEST)."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref = request.path_params["function"]
        action = str(form.get("action", "save"))
        code = str(form.get("code", "")).replace("\r\n", "\n")
        typed = {
            "code": code,
            "event": str(form.get("event", "")),
            "settings": str(form.get("settings", "")),
        }
        body: dict[str, Any] = {"code": code}
        if action == "deploy":
            body["deploy"] = True
        saved = await self.api.call("PATCH", f"/api/v1/functions/{ref}", principal, body=body)
        if saved.status != 200:
            if saved.status in (403, 404):
                return self.web.refused(saved, session)
            return await self._editor(
                request,
                session,
                principal,
                typed=typed,
                errors={_field(saved) or "code": saved.error},
                status=saved.form_status,
            )
        function_id = saved.data["function"]["id"]
        if action != "test":
            notice = "deployed" if action == "deploy" else "saved"
            return self.web.see_other(f"/functions/{function_id}?{notice}=1")
        return await self._test(request, session, principal, function_id, form, typed)

    async def _test(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        function_id: str,
        form: FormData,
        typed: dict[str, str],
    ) -> Response:
        found = await self.api.call("GET", f"/api/v1/functions/{function_id}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        kind = found.data["function"]["kind"]
        body, errors = _test_body(kind, typed["event"], typed["settings"])
        if errors:
            return await self._editor(
                request, session, principal, typed=typed, errors=errors, status=400
            )
        ran = await self.api.call(
            "POST", f"/api/v1/functions/{function_id}/test", principal, body=body
        )
        if ran.status != 200:
            field = _field(ran) or "event"
            where = "settings" if field.startswith("settings") else "event"
            return await self._editor(
                request,
                session,
                principal,
                typed=typed,
                errors={where: ran.error},
                status=ran.form_status,
            )
        return await self._editor(request, session, principal, typed=typed, result=ran.data)

    async def _editor(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        typed: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        result: dict[str, Any] | None = None,
        status: int = 200,
    ) -> Response:
        ref = request.path_params["function"]
        found = await self.api.call("GET", f"/api/v1/functions/{ref}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        function = found.data["function"]
        sample: Any = SAMPLE_REQUEST if function["kind"] == "source" else SAMPLE_EVENT
        shown = {
            "code": function["code"],
            "event": json.dumps(sample, indent=2),
            "settings": "{}",
            **(typed or {}),
        }
        params = request.query_params
        notice = None
        if params.get("saved") == "1":
            notice = f"Saved as version {function['latestVersion']}."
        elif params.get("deployed") == "1":
            notice = f"Saved and deployed version {function['deployedVersion']}."
        elif params.get("restored") == "1":
            notice = f"Restored as version {function['latestVersion']}."
        return self.web.render(
            "function.html",
            {
                "function": function,
                "kind_name": KIND_NAMES.get(function["kind"], function["kind"]),
                "shown": shown,
                "errors": errors or {},
                "result": _shown_result(result) if result is not None else None,
                "notice": notice,
                "can_edit": _can_edit(principal, function),
                "tab": "code",
                "current": "/functions",
            },
            status=status,
            session=session,
        )

    async def delete(self, request: Request, session: Session, principal: Principal) -> Response:
        if await self.web.posted_form(request, session) is None:
            return self.web.forbidden(session)
        ref = request.path_params["function"]
        answer = await self.api.call("DELETE", f"/api/v1/functions/{ref}", principal)
        if answer.status != 200:
            if answer.status == 409:  # in use: say so on the function's page
                return await self._editor(
                    request, session, principal, errors={"delete": answer.error}, status=409
                )
            return self.web.refused(answer, session)
        return self.web.see_other("/functions")

    # --- versions ----------------------------------------------------------------------------

    async def versions_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        loaded = await self._part(request, principal, "versions")
        if isinstance(loaded, Answer):
            return self.web.refused(loaded, session)
        function, answer = loaded
        return self.web.render(
            "function_versions.html",
            {
                "function": function,
                "versions": answer.data["versions"],
                "tab": "versions",
                "current": "/functions",
            },
            session=session,
        )

    async def version_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        number = request.path_params["version"]
        loaded = await self._part(request, principal, f"versions/{number}")
        if isinstance(loaded, Answer):
            return self.web.refused(loaded, session)
        function, answer = loaded
        return self.web.render(
            "function_version.html",
            {
                "function": function,
                "version": answer.data["version"],
                "can_edit": _can_edit(principal, function),
                "tab": "versions",
                "current": "/functions",
            },
            session=session,
        )

    async def restore(self, request: Request, session: Session, principal: Principal) -> Response:
        """A new version with a past version's code; deployed too with "Restore and deploy"."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref, number = request.path_params["function"], request.path_params["version"]
        deploy = form.get("deploy") == "1"
        answer = await self.api.call(
            "POST",
            f"/api/v1/functions/{ref}/versions/{number}/restore",
            principal,
            body={"deploy": deploy},
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other(f"/functions/{answer.data['function']['id']}?restored=1")

    # --- logs --------------------------------------------------------------------------------

    async def logs_page(self, request: Request, session: Session, principal: Principal) -> Response:
        loaded = await self._part(request, principal, "logs")
        if isinstance(loaded, Answer):
            return self.web.refused(loaded, session)
        function, answer = loaded
        logs = [
            {**entry, "payloadJson": _pretty(entry.get("payload"))} for entry in answer.data["logs"]
        ]
        return self.web.render(
            "function_logs.html",
            {"function": function, "logs": logs, "tab": "logs", "current": "/functions"},
            session=session,
        )

    async def _part(
        self, request: Request, principal: Principal, part: str
    ) -> tuple[dict[str, Any], Answer] | Answer:
        """The function the path names and the API's answer for a part of it (its versions, a
        version, its logs); or the refusal of either, for the page to show."""
        ref = request.path_params["function"]
        found = await self.api.call("GET", f"/api/v1/functions/{ref}", principal)
        if found.status != 200:
            return found
        function: dict[str, Any] = found.data["function"]
        answer = await self.api.call("GET", f"/api/v1/functions/{function['id']}/{part}", principal)
        return (function, answer) if answer.status == 200 else answer


def _can_edit(principal: Principal, function: dict[str, Any]) -> bool:
    """Whether the page offers saving, testing and deleting (the API decides in the end)."""
    return principal.allows("functions", True, Resource("FUNCTION", str(function["id"])))


def _field(answer: Answer) -> str | None:
    """The field the API's error names, if any."""
    try:
        found = answer.body["errors"][0].get("field")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return str(found) if found else None


def _test_body(kind: str, event: str, settings: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The test runner's body from the form's JSON texts, or the errors by field. A list of
    events runs ``onBatch``; a source function gets the JSON as its request's body."""
    errors: dict[str, str] = {}
    parsed_event: Any = None
    parsed_settings: Any = {}
    if len(event) > MAX_SAMPLE:
        errors["event"] = f"The sample must be at most {MAX_SAMPLE // 1024} KiB."
    else:
        try:
            parsed_event = json.loads(event)
        except ValueError as exc:
            errors["event"] = f"Not valid JSON: {exc}."
    if settings.strip():
        try:
            parsed_settings = json.loads(settings)
        except ValueError as exc:
            errors["settings"] = f"Not valid JSON: {exc}."
    if "settings" not in errors and not isinstance(parsed_settings, dict):
        errors["settings"] = "Settings must be a JSON object of setting names and values."
    if errors:
        return {}, errors
    body: dict[str, Any] = {"settings": parsed_settings}
    if kind == "source":
        body["request"] = {"method": "POST", "body": parsed_event}
    elif isinstance(parsed_event, list):
        body["events"] = parsed_event
    elif isinstance(parsed_event, dict):
        body["event"] = parsed_event
    else:
        return {}, {"event": "The sample must be an event (a JSON object) or a list of events."}
    return body, {}


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _shown_result(result: dict[str, Any]) -> dict[str, Any]:
    """The test runner's answer as the page shows it: JSON pretty-printed."""
    return {
        **result,
        "outputJson": _pretty(result.get("output")),
        "emittedJson": _pretty(result.get("emitted")) if result.get("emitted") else "",
    }
