"""A tracking plan compiled once per change, so validating an event is a few dict lookups.

Everything that can be wrong with a plan is found here, at save time, with the rule named:
a schema jsonschema-rs refuses, a `$schema` other than drafts 04, 06 and 07, a `$ref` that
is remote or loops, and a regex Segment's Go RE2 engine would refuse (lookaround,
backreferences) — jsonschema-rs's fancy-regex would accept those and validate differently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

import jsonschema_rs

from headwater.protocols.explain import Explainer, explainer
from headwater.protocols.schema_messages import Violation, violations_from

RuleType = Literal["COMMON", "TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN"]
RULE_TYPES: frozenset[str] = frozenset({"COMMON", "TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN"})

PAGE_VIEWED = "Page Viewed"
SCREEN_VIEWED = "Screen Viewed"

_DRAFTS: dict[str, type[jsonschema_rs.Validator]] = {
    "json-schema.org/draft-04/schema": jsonschema_rs.Draft4Validator,
    "json-schema.org/draft-06/schema": jsonschema_rs.Draft6Validator,
    "json-schema.org/draft-07/schema": jsonschema_rs.Draft7Validator,
}
_DEFAULT_DRAFT = jsonschema_rs.Draft7Validator  # what Segment's editor writes

# Constructs RE2 does not have: lookahead/lookbehind, atomic groups, backreferences.
_NOT_RE2 = re.compile(r"\(\?(?:=|!|<=|<!|>)|\\[1-9]|\\k<|\\g")


@dataclass(frozen=True, slots=True)
class Rule:
    """A tracking-plan rule, as the Public API's `RuleV1` carries it."""

    type: str
    key: str
    json_schema: Any
    version: int = 1

    def name(self) -> str:
        return f"{self.type} rule {self.key!r} version {self.version}"


class PlanError(ValueError):
    """A plan that cannot be compiled; the message names the rule."""

    def __init__(self, rule: Rule, reason: str) -> None:
        super().__init__(f"{rule.name()}: {reason}")
        self.rule = rule
        self.reason = reason


class RuleSchema:
    """One rule version's schema: jsonschema-rs's verdict, and the violations of a failing event.

    The violations come from a walk in Python when the rule has the usual shape (explain.py),
    else from jsonschema-rs's error objects; `is_valid` and `errors` are plain attributes, so a
    call costs no more than calling jsonschema-rs itself.
    """

    __slots__ = ("errors", "is_valid", "validator")

    def __init__(self, validator: jsonschema_rs.Validator, errors: Explainer) -> None:
        self.validator = validator
        self.is_valid: Callable[[Any], bool] = validator.is_valid
        self.errors = errors


@dataclass(frozen=True, slots=True)
class CompiledEvent:
    """Every version of one event's rule, and the names it plans (from the oldest version)."""

    versions: Mapping[int, RuleSchema]
    oldest: RuleSchema
    planned: frozenset[str]
    # Whether the last event checked against this rule failed. Failures come in runs (one app
    # version sending one bad property), and a failing event then goes straight to its errors
    # instead of paying for `is_valid` first; a stale value costs one extra call, never a
    # wrong answer.
    failing: list[bool] = field(default_factory=lambda: [False], compare=False)

    def schema(self, event: Mapping[str, Any]) -> RuleSchema:
        """The version the event asks for; missing, non-integer or unknown → the oldest."""
        if len(self.versions) == 1:
            return self.oldest
        context = event.get("context")
        if type(context) is dict:
            protocols = context.get("protocols")
            if type(protocols) is dict:
                version = protocols.get("event_version")
                if type(version) is int:
                    return self.versions.get(version, self.oldest)
        return self.oldest


@dataclass(frozen=True, slots=True)
class CompiledPlan:
    """Validators per call: Track by event name; Identify, Group, Page, Screen one each."""

    track: Mapping[str, CompiledEvent]
    identify: CompiledEvent | None
    group: CompiledEvent | None
    page: CompiledEvent | None
    screen: CompiledEvent | None
    common: RuleSchema | None


def compile_plan(rules: Iterable[Rule]) -> CompiledPlan:
    """Compile a plan's rules, or raise PlanError naming the first bad rule."""
    by_event: dict[tuple[str, str], dict[int, tuple[Rule, RuleSchema]]] = {}
    single_key: dict[str, str] = {}
    for rule in rules:
        if rule.type not in RULE_TYPES:
            raise PlanError(rule, f"unknown rule type {rule.type!r}")
        if type(rule.version) is not int:
            raise PlanError(rule, "version must be an integer")
        if rule.type != "TRACK":
            # One definition per call type: the key names it but does not select it.
            known = single_key.setdefault(rule.type, rule.key)
            if known != rule.key:
                raise PlanError(rule, f"the plan already has a {rule.type} rule {known!r}")
        versions = by_event.setdefault((rule.type, rule.key), {})
        if rule.version in versions:
            raise PlanError(rule, "duplicate rule")
        versions[rule.version] = (rule, compile_schema(rule))
    events = {ident: _event(ident[0], versions) for ident, versions in by_event.items()}
    track = {key: event for (kind, key), event in events.items() if kind == "TRACK"}
    singles = {kind: event for (kind, _key), event in events.items() if kind != "TRACK"}
    common = singles.get("COMMON")
    return CompiledPlan(
        track=track,
        identify=singles.get("IDENTIFY"),
        group=singles.get("GROUP"),
        page=singles.get("PAGE") or track.get(PAGE_VIEWED),
        screen=singles.get("SCREEN") or track.get(SCREEN_VIEWED),
        common=common.oldest if common is not None else None,
    )


def _event(kind: str, versions: Mapping[int, tuple[Rule, RuleSchema]]) -> CompiledEvent:
    oldest = min(versions)
    container = "traits" if kind in ("IDENTIFY", "GROUP") else "properties"
    return CompiledEvent(
        versions={version: schema for version, (_rule, schema) in versions.items()},
        oldest=versions[oldest][1],
        planned=planned_names(versions[oldest][0].json_schema, container),
    )


def _has_summaries(schema: Any) -> bool:
    """Whether a schema uses a keyword gojsonschema adds a summary violation for."""
    if isinstance(schema, dict):
        if "allOf" in schema or "then" in schema or "else" in schema:
            return True
        return any(_has_summaries(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_has_summaries(value) for value in schema)
    return False


def planned_names(schema: Any, container: str) -> frozenset[str]:
    """Names a rule plans under `properties` or `traits` (`properties.<container>.properties`)."""
    if not isinstance(schema, dict):
        return frozenset()
    outer = schema.get("properties")
    inner = outer.get(container) if isinstance(outer, dict) else None
    names = inner.get("properties") if isinstance(inner, dict) else None
    return frozenset(names) if isinstance(names, dict) else frozenset()


def compile_schema(rule: Rule) -> RuleSchema:
    """One rule's schema, after the checks jsonschema-rs does not make for us."""
    schema = rule.json_schema
    if not isinstance(schema, dict):
        raise PlanError(rule, "jsonSchema must be a JSON object")
    draft = _draft(rule, schema.get("$schema"))
    refs: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    for pointer, sub in _subschemas(schema, ()):
        pattern = sub.get("pattern")
        if isinstance(pattern, str):
            _check_pattern(rule, pattern, pointer)
        pattern_properties = sub.get("patternProperties")
        if isinstance(pattern_properties, dict):
            for key in pattern_properties:
                _check_pattern(rule, key, pointer)
        ref = sub.get("$ref")
        if isinstance(ref, str):
            target = _local_pointer(rule, ref)
            if _resolve(schema, target) is None:
                raise PlanError(rule, f"$ref {ref!r} points at nothing")
            refs.append((pointer, target))
    _check_ref_cycles(rule, refs)
    per_property = _per_property(schema)
    try:
        validator = draft(per_property, validate_formats=True)
    except jsonschema_rs.ValidationError as error:
        raise PlanError(rule, f"invalid JSON Schema: {error.message}") from None
    summaries = _has_summaries(schema)
    # a `$ref` points from the root and summaries need whole-rule paths: no walk of subtrees
    walk = None if summaries or refs else explainer(per_property, draft)
    if walk is None:

        def walk(event: Any) -> list[Violation]:
            return violations_from(validator.iter_errors(event), summaries)

    return RuleSchema(validator, walk)


_NOTHING: dict[str, Any] = {"not": {}}
_DATA = frozenset({"enum", "const", "default", "examples", "labels"})  # values, not schemas


def _per_property(schema: Any) -> Any:
    """`additionalProperties: false` as `{"not": {}}`: the same verdict, one error per property.

    jsonschema-rs 0.60 reports `false` once, for the first extra property only; gojsonschema
    (and so Segment) reports every extra property.
    """
    if isinstance(schema, list):
        return [_per_property(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: value if key in _DATA else _per_property(value) for key, value in schema.items()}
    if schema.get("additionalProperties") is False:
        out["additionalProperties"] = _NOTHING
    return out


def _draft(rule: Rule, uri: Any) -> type[jsonschema_rs.Validator]:
    if uri is None:
        return _DEFAULT_DRAFT
    if isinstance(uri, str):
        bare = uri.split("://", 1)[-1].rstrip("#")
        found = _DRAFTS.get(bare)
        if found is not None:
            return found
    raise PlanError(rule, f"unsupported $schema {uri!r} (drafts 04, 06 and 07 only)")


def _check_pattern(rule: Rule, pattern: str, pointer: tuple[str, ...]) -> None:
    where = "/" + "/".join(pointer)
    if _NOT_RE2.search(pattern):
        raise PlanError(
            rule,
            f"pattern {pattern!r} at {where} uses lookaround or a backreference, which "
            'Segment\'s RE2 engine does not support (use "not": {"pattern": …})',
        )


_ONE = ("additionalItems", "additionalProperties", "contains", "propertyNames", "not", "if",
        "then", "else")  # fmt: skip
_MANY = ("allOf", "anyOf", "oneOf")
_MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependencies")


def _subschemas(schema: Any, pointer: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every schema object inside a schema, with its JSON pointer (keywords, not data)."""
    if not isinstance(schema, dict):
        return
    yield pointer, schema
    for keyword in _ONE:
        if keyword in schema:
            yield from _subschemas(schema[keyword], (*pointer, keyword))
    for keyword in _MANY:
        branches = schema.get(keyword)
        if isinstance(branches, list):
            for index, branch in enumerate(branches):
                yield from _subschemas(branch, (*pointer, keyword, str(index)))
    items = schema.get("items")
    if isinstance(items, list):
        for index, item in enumerate(items):
            yield from _subschemas(item, (*pointer, "items", str(index)))
    elif items is not None:
        yield from _subschemas(items, (*pointer, "items"))
    for keyword in _MAPS:
        members = schema.get(keyword)
        if isinstance(members, dict):
            for name, member in members.items():
                yield from _subschemas(member, (*pointer, keyword, name))


def _local_pointer(rule: Rule, ref: str) -> tuple[str, ...]:
    if not ref.startswith("#"):
        raise PlanError(rule, f"$ref {ref!r} is not local to the rule (only '#/…' references)")
    fragment = unquote(ref[1:])
    if fragment == "":
        return ()
    if not fragment.startswith("/"):
        raise PlanError(rule, f"$ref {ref!r} is not a JSON pointer")
    return tuple(part.replace("~1", "/").replace("~0", "~") for part in fragment[1:].split("/"))


def _resolve(schema: Any, pointer: tuple[str, ...]) -> Any:
    node = schema
    for part in pointer:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _check_ref_cycles(rule: Rule, refs: list[tuple[tuple[str, ...], tuple[str, ...]]]) -> None:
    """Refuse a `$ref` whose expansion reaches itself again: plans must be finite trees."""
    # ref i leads to ref j when j sits inside the subtree i points at
    leads = [
        [j for j, (position, _) in enumerate(refs) if position[: len(target)] == target]
        for _, target in refs
    ]
    state = [0] * len(refs)  # 0 unseen, 1 on the path, 2 finished

    def visit(i: int) -> None:
        state[i] = 1
        for j in leads[i]:
            if state[j] == 1:
                where = "#" + "".join("/" + part for part in refs[j][1])
                raise PlanError(rule, f"$ref cycle through {where}")
            if state[j] == 0:
                visit(j)
        state[i] = 2

    for i in range(len(refs)):
        if state[i] == 0:
            visit(i)
