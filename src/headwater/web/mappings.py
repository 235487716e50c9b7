"""An Actions destination's mappings (Segment's subscriptions): the list with each trigger and
an enable switch, adding one for an action, and a mapping's page: a trigger builder (event
types, an event name condition) or the trigger's FQL, each action field mapped to a path of
the event or a literal, and the Event Tester sending a sample event through the mapping.

Reads and changes go through ``/api/v1/destinations/{id}/mappings``, the catalog (the
action's fields) and ``…/tester`` in process. The builder writes only the part of Segment's
trigger syntax it can read back; any other trigger is edited as FQL.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.web.destinations import definition_of, delete_part, destination_of
from headwater.web.inprocess import Answer
from headwater.web.sessions import Session

if TYPE_CHECKING:
    from headwater.web.app import WebApp

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
OPERATORS = {
    "": "Any event name",
    "is": "is",
    "is_not": "is not",
    "contains": "contains",
    "starts_with": "starts with",
}
COMMON_PATHS = (
    "$.event",
    "$.name",
    "$.type",
    "$.userId",
    "$.anonymousId",
    "$.messageId",
    "$.timestamp",
    "$.properties",
    "$.traits",
    "$.context",
    "$.context.traits",
    "$.context.ip",
    "$.context.userAgent",
    "$.context.page.url",
    "$.properties.revenue",
    "$.properties.currency",
    "$.traits.email",
    "$.properties.email",
)
SAMPLE_EVENT = {
    "type": "track",
    "event": "Order Completed",
    "userId": "user-1",
    "properties": {"order_id": "o-1", "revenue": 42, "currency": "USD"},
}
_TYPES = r'(?:type = "(?P<one>[a-z]+)"|\((?P<many>type = "[a-z]+"(?: or type = "[a-z]+")+)\))'
_EVENT = (
    r'(?:event = "(?P<is>[^"]*)"|event != "(?P<is_not>[^"]*)"'
    r'|contains\(event, "(?P<contains>[^"]*)"\)|match\(event, "(?P<starts_with>[^"]*)\*"\))'
)
# Reading back checks the round trip: what the builder writes from the parts must be the text.
_BUILT = re.compile(rf"^{_TYPES}?(?: and )?{_EVENT}?$")


class MappingPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        base = "/destinations/{destination}/mappings"
        return self.web.page_routes(
            "sources",
            [
                ("GET", base, self.list_page),
                ("POST", base, self.create),
                ("GET", base + "/new", self.new_page),
                ("GET", base + "/{mapping}", self.mapping_page),
                ("POST", base + "/{mapping}", self.save),
                ("POST", base + "/{mapping}/enabled", self.toggle),
                ("POST", base + "/{mapping}/delete", self.delete),
                ("POST", base + "/{mapping}/test", self.test),
            ],
        )

    # --- the list, and adding a mapping -----------------------------------------------------

    async def list_page(self, request: Request, session: Session, principal: Principal) -> Response:
        return await self._list(request, session, principal)

    async def _list(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        found = await destination_of(self.api, request, principal)
        if found.status != 200:
            return self.web.refused(found, session)
        destination = found.data["destination"]
        definition = await self._definition(destination, principal)
        mappings: list[dict[str, Any]] = []
        if definition is not None and definition["actions"]:
            answer = await self.api.call(
                "GET", f"/api/v1/destinations/{destination['id']}/mappings", principal
            )
            if answer.status != 200:
                return self.web.refused(answer, session)
            mappings = answer.data["mappings"]
        actions = {a["name"]: a["title"] for a in (definition or {}).get("actions", [])}
        params = request.query_params
        notice = "Mapping deleted." if params.get("deleted") == "1" else None
        return self.web.render(
            "mappings.html",
            {
                "destination": destination,
                "actions": actions,
                "mappings": mappings,
                "form": {"name": "", "action": "", **(form or {})},
                "errors": errors or {},
                "notice": notice,
                "current": "/destinations",
            },
            status=status,
            session=session,
        )

    async def new_page(self, request: Request, session: Session, principal: Principal) -> Response:
        """A new mapping of the chosen action, not saved yet: the action's default trigger and
        fields, to complete (required fields without a default) before saving."""
        given = {
            "name": request.query_params.get("name", "").strip()[:200],
            "action": request.query_params.get("action", ""),
        }
        found = await destination_of(self.api, request, principal)
        if found.status != 200:
            return self.web.refused(found, session)
        destination = found.data["destination"]
        if "action" not in request.query_params:  # no action chosen yet: the list chooses one
            return self.web.see_other(f"/destinations/{destination['id']}/mappings")
        action = _action(await self._definition(destination, principal), given["action"])
        if action is None:
            errors = {"action": "Choose an action."}
            return await self._list(
                request, session, principal, form=given, errors=errors, status=400
            )
        draft = {
            "name": given["name"] or action["title"],
            "action": action["name"],
            "trigger": action.get("defaultTrigger") or 'type = "track"',
            "enabled": False,
            "fields": {
                name: spec["default"]
                for name, spec in action["fields"].items()
                if spec.get("default") is not None
            },
        }
        return self._render(request, session, destination, None, action, _form_of(draft, action))

    async def create(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        found = await destination_of(self.api, request, principal)
        if found.status != 200:
            return self.web.refused(found, session)
        destination = found.data["destination"]
        definition = await self._definition(destination, principal)
        action = _action(definition, str(form.get("action", "")))
        if action is None:
            errors = {"action": "Choose an action."}
            return await self._list(request, session, principal, errors=errors, status=400)
        typed = _typed(form, action)
        body, errors = _mapping_of(typed, action)
        if errors:
            return self._render(
                request, session, destination, None, action, typed, errors=errors, status=400
            )
        answer = await self.api.call(
            "POST",
            f"/api/v1/destinations/{destination['id']}/mappings",
            principal,
            body={**body, "action": action["name"]},
        )
        if answer.status != 201:
            if answer.status in (403, 404):
                return self.web.refused(answer, session)
            return self._render(
                request,
                session,
                destination,
                None,
                action,
                typed,
                errors=_errors_of(answer),
                status=answer.form_status,
            )
        mapping_id = answer.data["mapping"]["id"]
        return self.web.see_other(
            f"/destinations/{destination['id']}/mappings/{mapping_id}?saved=1"
        )

    async def toggle(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref, mapping_id = request.path_params["destination"], request.path_params["mapping"]
        answer = await self.api.call(
            "PATCH",
            f"/api/v1/destinations/{ref}/mappings/{mapping_id}",
            principal,
            body={"enabled": form.get("enabled") == "1"},
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        back = "" if form.get("back") == "list" else f"/{mapping_id}"
        return self.web.see_other(f"/destinations/{ref}/mappings{back}")

    async def delete(self, request: Request, session: Session, principal: Principal) -> Response:
        return await delete_part(self.web, request, session, principal, "mappings")

    async def _definition(
        self, destination: dict[str, Any], principal: Principal
    ) -> dict[str, Any] | None:
        """The destination's catalog entry (its actions and their fields)."""
        return (await definition_of(self.api, principal, destination["type"]))[1]

    # --- one mapping -------------------------------------------------------------------------

    async def mapping_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._page(request, session, principal)

    async def save(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        loaded = await self._load(request, principal)
        if isinstance(loaded, Answer):
            return self.web.refused(loaded, session)
        destination, mapping, action = loaded
        typed = _typed(form, action)
        body, errors = _mapping_of(typed, action)
        if errors:
            return await self._page(
                request, session, principal, typed=typed, errors=errors, status=400
            )
        answer = await self.api.call(
            "PATCH",
            f"/api/v1/destinations/{destination['id']}/mappings/{mapping['id']}",
            principal,
            body=body,
        )
        if answer.status != 200:
            if answer.status in (403, 404):
                return self.web.refused(answer, session)
            return await self._page(
                request,
                session,
                principal,
                typed=typed,
                errors=_errors_of(answer),
                status=answer.form_status,
            )
        return self.web.see_other(
            f"/destinations/{destination['id']}/mappings/{mapping['id']}?saved=1"
        )

    async def test(self, request: Request, session: Session, principal: Principal) -> Response:
        """Segment's "Test Mapping": the sample event through this mapping (enabled or not)."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref, mapping_id = request.path_params["destination"], request.path_params["mapping"]
        sample = str(form.get("event", ""))
        try:
            event = json.loads(sample)
        except ValueError as exc:
            return await self._page(
                request,
                session,
                principal,
                sample=sample,
                errors={"event": f"Not valid JSON: {exc}."},
                status=400,
            )
        answer = await self.api.call(
            "POST",
            f"/api/v1/destinations/{ref}/tester",
            principal,
            body={"event": event, "mappingId": mapping_id},
        )
        if answer.status != 200:
            if answer.status in (403, 404):
                return self.web.refused(answer, session)
            return await self._page(
                request,
                session,
                principal,
                sample=sample,
                errors={"event": answer.error},
                status=answer.form_status,
            )
        return await self._page(
            request, session, principal, sample=sample, result=_shown_result(answer.data)
        )

    async def _page(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        typed: dict[str, Any] | None = None,
        sample: str | None = None,
        errors: dict[str, str] | None = None,
        result: dict[str, Any] | None = None,
        status: int = 200,
    ) -> Response:
        loaded = await self._load(request, principal)
        if isinstance(loaded, Answer):
            return self.web.refused(loaded, session)
        destination, mapping, action = loaded
        shown = typed if typed is not None else _form_of(mapping, action)
        return self._render(
            request,
            session,
            destination,
            mapping,
            action,
            shown,
            sample=sample,
            errors=errors,
            result=result,
            status=status,
        )

    def _render(
        self,
        request: Request,
        session: Session,
        destination: dict[str, Any],
        mapping: dict[str, Any] | None,
        action: dict[str, Any],
        shown: dict[str, Any],
        *,
        sample: str | None = None,
        errors: dict[str, str] | None = None,
        result: dict[str, Any] | None = None,
        status: int = 200,
    ) -> Response:
        """The mapping's page; ``mapping`` None: a new one of ``action``, not saved yet."""
        return self.web.render(
            "mapping.html",
            {
                "destination": destination,
                "mapping": mapping,
                "action": action,
                "shown": shown,
                "rows": _field_rows(action, shown),
                "event_types": EVENT_TYPES,
                "operators": OPERATORS,
                "sample": sample if sample is not None else json.dumps(SAMPLE_EVENT, indent=2),
                "errors": errors or {},
                "result": result,
                "saved": request.query_params.get("saved") == "1",
                "current": "/destinations",
            },
            status=status,
            session=session,
        )

    async def _load(
        self, request: Request, principal: Principal
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | Answer:
        """The destination, the mapping and its action's definition, or the API's refusal."""
        found = await destination_of(self.api, request, principal)
        if found.status != 200:
            return found
        destination = found.data["destination"]
        mapping_id = request.path_params["mapping"]
        answer = await self.api.call(
            "GET", f"/api/v1/destinations/{destination['id']}/mappings/{mapping_id}", principal
        )
        if answer.status != 200:
            return answer
        mapping = answer.data["mapping"]
        definition = await self._definition(destination, principal)
        action = _action(definition, mapping["action"]) or {
            "name": mapping["action"],
            "title": mapping["action"],
            "description": "",
            "fields": {},
        }
        return destination, mapping, action


# --- the trigger builder ---------------------------------------------------------------------


def built_trigger(types: list[str], operator: str, name: str) -> tuple[str, str | None]:
    """The trigger FQL for event types and an event name condition, or why there is none."""
    conditions: list[str] = []
    if len(types) == 1:
        conditions.append(f'type = "{types[0]}"')
    elif types:
        conditions.append("(" + " or ".join(f'type = "{t}"' for t in types) + ")")
    if operator:
        if not name:
            return "", "Enter the event name to compare with."
        if '"' in name:
            return "", "An event name with a double quote can only be matched by writing FQL."
        conditions.append(
            {
                "is": f'event = "{name}"',
                "is_not": f'event != "{name}"',
                "contains": f'contains(event, "{name}")',
                "starts_with": f'match(event, "{name}*")',
            }[operator]
        )
    if not conditions:
        return "", "Choose an event type or an event name condition, or write the trigger in FQL."
    return " and ".join(conditions), None


def read_trigger(trigger: str) -> dict[str, Any] | None:
    """The builder's conditions for a trigger it could have written, else None."""
    found = _BUILT.match(trigger)
    if found is None:
        return None
    types = [found.group("one")] if found.group("one") else []
    if found.group("many"):
        types = re.findall(r'type = "([a-z]+)"', found.group("many"))
    operator = next((op for op in OPERATORS if op and found.group(op) is not None), "")
    name = found.group(operator) if operator else ""
    if any(t not in EVENT_TYPES for t in types) or len(set(types)) != len(types):
        return None
    if built_trigger(types, operator, name)[0] != trigger:
        return None
    return {"types": types, "operator": operator, "name": name}


# --- forms -----------------------------------------------------------------------------------


def _action(definition: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if definition is None:
        return None
    return next((a for a in definition.get("actions", []) if a["name"] == name), None)


def _form_of(mapping: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
    """A stored mapping as the page's fields."""
    trigger = str(mapping.get("trigger", ""))
    built = read_trigger(trigger)
    fields: dict[str, tuple[str, str]] = {}
    values = mapping.get("fields") or {}
    for name in {**action["fields"], **values}:
        fields[name] = _source_of(values.get(name))
    return {
        "name": mapping.get("name", ""),
        "enabled": bool(mapping.get("enabled")),
        "mode": "builder" if built is not None else "fql",
        "types": built["types"] if built else [],
        "operator": built["operator"] if built else "",
        "event_name": built["name"] if built else "",
        "trigger": trigger,
        "fields": fields,
    }


def _source_of(value: Any) -> tuple[str, str]:
    """A field's value as the select's choice and the text box's value."""
    if value is None:
        return "", ""
    if isinstance(value, dict) and set(value) == {"@path"} and isinstance(value["@path"], str):
        path = value["@path"]
        return (path, "") if path in COMMON_PATHS else ("path", path)
    if isinstance(value, str):
        return "literal", value
    if isinstance(value, bool | int | float):
        return "literal", json.dumps(value)
    return "json", json.dumps(value, ensure_ascii=False)


def _typed(form: FormData, action: dict[str, Any]) -> dict[str, Any]:
    """The form as it was sent, to show it again."""
    names = [k.removeprefix("source:") for k in form if k.startswith("source:")]
    return {
        "name": str(form.get("name", "")).strip(),
        "enabled": form.get("enabled") == "1",
        "mode": "fql" if form.get("mode") == "fql" else "builder",
        "types": [t for t in EVENT_TYPES if form.get(f"type_{t}") == "1"],
        "operator": str(form.get("operator", "")),
        "event_name": str(form.get("event_name", "")),
        "trigger": str(form.get("trigger", "")).strip(),
        "fields": {
            name: (str(form.get(f"source:{name}", "")), str(form.get(f"value:{name}", "")))
            for name in dict.fromkeys([*action["fields"], *names])
        },
    }


def _mapping_of(
    typed: dict[str, Any], action: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The change the API takes, or the errors by field."""
    errors: dict[str, str] = {}
    if not typed["name"]:
        errors["name"] = "Enter a name."
    trigger = typed["trigger"]
    if typed["mode"] == "builder":
        operator = typed["operator"] if typed["operator"] in OPERATORS else ""
        trigger, problem = built_trigger(typed["types"], operator, typed["event_name"].strip())
        if problem:
            errors["builder"] = problem
    elif not trigger:
        errors["trigger"] = 'Enter the trigger, such as type = "track" and event = "Signed Up".'
    fields: dict[str, Any] = {}
    for name, (source, text) in typed["fields"].items():
        spec = action["fields"].get(name, {})
        value, problem = _value_of(source, text, spec)
        if problem:
            errors[f"field:{name}"] = problem
        elif value is not None:
            fields[name] = value
    body = {
        "name": typed["name"],
        "enabled": typed["enabled"],
        "trigger": trigger,
        "fields": fields,
    }
    return body, errors


def _value_of(source: str, text: str, spec: dict[str, Any]) -> tuple[Any, str | None]:
    if not source:
        return None, None
    if source.startswith("$."):
        return {"@path": source}, None
    if source == "path":
        path = text.strip()
        if not path.startswith("$."):
            return None, "A path starts with $. (such as $.properties.order_id)."
        return {"@path": path}, None
    if source == "json":
        try:
            return json.loads(text), None
        except ValueError as exc:
            return None, f"Not valid JSON: {exc}."
    if source == "literal":
        kind = spec.get("type")
        if kind in ("number", "integer"):
            try:
                number = float(text)
            except ValueError:
                return None, "Enter a number."
            return (int(number) if kind == "integer" or number.is_integer() else number), None
        if kind == "boolean":
            if text.strip().lower() not in ("true", "false"):
                return None, "Enter true or false."
            return text.strip().lower() == "true", None
        return text, None
    return None, "Choose where the value comes from."


def _field_rows(action: dict[str, Any], shown: dict[str, Any]) -> list[dict[str, Any]]:
    """Each field with its choices: the common paths, its default's path, its current one."""
    rows = []
    for name, (source, text) in shown["fields"].items():
        spec = action["fields"].get(name, {})
        paths = list(COMMON_PATHS)
        default = spec.get("default")
        path = default.get("@path") if isinstance(default, dict) else None
        if isinstance(path, str) and path not in paths:
            paths.insert(0, path)
        if source.startswith("$.") and source not in paths:
            paths.insert(0, source)
        rows.append(
            {
                "name": name,
                "spec": spec,
                "source": source,
                "text": text,
                "paths": paths,
                "choices": spec.get("choices") or [],
            }
        )
    return rows


def _errors_of(answer: Answer) -> dict[str, str]:
    """The API's refusal by the page's field it concerns."""
    try:
        field = str(answer.body["errors"][0].get("field") or "")
    except (KeyError, IndexError, TypeError, AttributeError):
        field = ""
    message = re.sub(r"^mappings\.\d+\.[\w.]*: ", "", answer.error)
    parts = field.split(".")
    if parts[:1] == ["mappings"] and len(parts) > 1:
        parts = parts[2:]
    message = re.sub(r"^\[\d+\]\.(?!fields: )[\w.]*: ", "", message)
    if parts[:1] == ["trigger"]:
        return {"trigger": message}
    if parts[:1] == ["name"]:
        return {"name": message}
    if parts[:1] == ["fields"] and len(parts) > 1:
        return {f"field:{parts[1]}": message}
    named = re.match(r"^(?:\[\d+\]\.fields: )?([\w-]+): (.+)$", message, re.S)
    if parts[:1] == ["fields"] and named is not None:  # "url: is required but not mapped"
        return {f"field:{named.group(1)}": named.group(2)}
    return {"form": message}


def _shown_result(result: dict[str, Any]) -> dict[str, Any]:
    attempts = [
        {
            **attempt,
            "requestJson": json.dumps(attempt.get("requestToDestination"), indent=2)
            if attempt.get("requestToDestination") is not None
            else "",
            "responseJson": json.dumps(attempt.get("responseFromDestination"), indent=2)
            if attempt.get("responseFromDestination") is not None
            else "",
        }
        for attempt in result.get("attempts", [])
    ]
    return {**result, "attempts": attempts}
