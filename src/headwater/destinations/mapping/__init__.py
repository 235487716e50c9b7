"""Destination Actions field mappings: Segment's mapping kit, validated once, rendered per event.

A mapping is JSON. An object whose keys all start with ``@`` (plus an optional ``_metadata``) is
a directive; every other object or array is walked and its values rendered; anything else is a
literal. The answers follow ``@segment/actions-core``'s ``transform`` (mapping-kit, read at
3.170.0) exactly, quirks included, because saved Segment mappings must keep producing the same
payloads here; the answers are meant to be checked against actions-core run under Node.

Directives
    ``@path``  ``"$.a.b[0]"`` or ``"a.b"``: reads the payload. Only the first ``$.`` is removed;
        segments split at ``.``, ``[`` before a quote or digit and ``]`` after one, and quotes are
        dropped, so ``a["b.c"]`` still means a, b, c. Like JavaScript's ``prev && prev[key]``,
        a walk stops at a falsy value (``null``, ``false``, ``0``, ``""``), which is the result:
        ``a.b`` of ``{"a": null}`` is ``null``, not missing. Strings and arrays answer digit keys
        and ``length`` (in UTF-16 code units). Missing is *absent*: the key is left out.
    ``@template``  ``{{{ path }}}`` placeholders, then ``{{ path }}`` ones over the result (a value
        holding ``{{x}}`` is expanded again, as in actions-core). Paths are trimmed, are not
        stripped of ``$.``, and an empty one means the whole payload. Missing or null gives
        ``""``; other values become JavaScript strings (``1e+21``, ``1,2``, ``[object Object]``).
    ``@if``  ``exists`` (not null and not missing) or ``blank`` (additionally ``!= ""`` in
        JavaScript's loose sense, so ``0``, ``false``, ``[]`` and ``[""]`` are blank), then
        ``then`` / ``else``. ``exists`` wins when both are given. A falsy ``else`` (``false``,
        ``0``, ``""``, ``null``) gives absent, as does a missing branch.
    ``@literal``  its value, rendered (so directives inside still run).
    ``@arrayPath``  ``[path, shape]``: when the path finds an object or array and the shape is a
        non-empty object, each element (an object counts as one) is rendered with the shape as
        its payload; otherwise the found value itself.
    ``@case``  ``{"operator": "lower"|"upper", "value": ...}``: strings change case, anything
        else passes through; a falsy ``value`` gives absent.
    ``@replace``  ``pattern`` / ``replacement`` (then ``pattern2`` / ``replacement2``), literal
        text, at most 10 UTF-16 units each; ``global`` (default true) and ``ignorecase``
        (JavaScript's non-Unicode case folding). Numbers and booleans are replaced as their
        strings; any other rendered value (missing, null, objects) gives ``""``. ``$&``, `` $` ``,
        ``$'`` and ``$$`` in a replacement work as in ``String.prototype.replace``.
    ``@merge``  ``{"objects": [...], "direction": "left"|"right"}``: ``Object.assign`` of the
        rendered objects; ``left`` lets earlier objects win. Strings and arrays contribute their
        indices; other non-objects nothing; a missing value in a later object removes the key.
    ``@flatten``  ``{"value": ..., "separator": "."}`` (``omitArrays`` keeps arrays whole):
        nested keys joined; a non-object value becomes ``{"": value}``.
    ``@json``  ``{"mode": "encode"|"decode", "value": ...}``: ``JSON.stringify`` (JavaScript key
        order and number format) or ``JSON.parse`` (invalid JSON passes through unchanged).
    ``@transform``  ``{"apply": mapping, "mapping": mapping}``: renders ``apply`` against the
        payload and ``mapping`` against that result.
    ``@excludeWhenNull``  absent when the value renders to null; in objects, null values (at any
        depth of nested objects, not inside arrays) are dropped.

Validation mirrors actions-core's ``validate``: it checks directive shapes where actions-core
does, and, like it, does not look inside arrays or inside ``@literal`` / ``@excludeWhenNull``
objects. Other problems (an unknown directive inside an array, ``@merge`` without a
``direction``) surface as a MappingError when rendering reaches them, as in actions-core, where
a branch that is not taken never fails.

Destination-field paths (Segment's dot notation) are opt-in: ``expand_keys=True`` makes the
top-level keys of a mapping (an action's ``fields``) paths, so ``info[0].email`` (or Segment's
``info.[0].email``) builds ``{"info": [{"email": ...}]}`` and a double-quoted ``"user.email"`` is
the literal key ``user.email``. Off by default because actions-core treats every key literally
and existing mappings may hold keys with dots. Containers all of whose values are absent are
left out; array positions nobody fills are null; overlapping paths are refused when compiling.

Objects, arrays and directives nest at most ``MAX_DEPTH`` (64) levels in a mapping, and a
destination-field path has at most as many segments: deeper ones are a MappingError when
compiled, where actions-core would overflow its stack.

Deliberate differences from actions-core:
    * ``@liquid`` is not supported and fails validation.
    * Properties a JavaScript value inherits (``constructor``, ``toString``, ``__proto__``, array
      methods...) are missing when read by a path, and ``__proto__`` keys are ordinary keys.
    * The root of a mapping must be an object (actions-core would spread an array or a string
      into one) and its ``__segment_internal_directive`` key has no special meaning.
    * Absent values inside arrays come out as null (what ``JSON.stringify`` makes of
      ``undefined`` there); a mapping whose root is a directive rendering to absent gives None.
    * Integers in payloads keep their exact value; they are rounded like JavaScript numbers only
      where they are turned into text.
    * Error messages and paths are ours (``fields.order.@path``), and validation stops at the
      first error where actions-core gathers all of them.

``FieldSpec``, ``check_fields`` and ``coerce_output`` follow actions-core's action schema check:
empty values (null, and ``""`` at the top level) are removed first, then values are coerced like
ajv with ``coerceTypes: "array"`` (``"12"`` to 12, ``"true"`` to true, a scalar to a one-item
array and back), unknown fields dropped, and a required field that is left with nothing or a
value of the wrong type is a MappingError, which rejects the message rather than retrying it.
The ``datetime`` format check approximates dayjs and V8 date parsing (numbers, ISO 8601,
RFC 2822 and dayjs's ``YYYY-MM-DD HH:mm:ss`` forms).

Modules: ``directives`` (compiling), ``validation``, ``paths`` (``@path`` reads),
``javascript`` (the value rules the answers depend on), ``field_paths`` (``expand_keys``),
``fields`` (the action's field schema), ``errors``; this one holds the entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from headwater.destinations.javascript import UNDEFINED, type_of
from headwater.destinations.mapping.directives import _directive_name, _Eval, _evaluator, _finish
from headwater.destinations.mapping.errors import MAX_DEPTH
from headwater.destinations.mapping.field_paths import _build, _place, _Slot
from headwater.destinations.mapping.fields import FieldSpec, check_fields, coerce_output
from headwater.destinations.mapping.validation import _validate, validate_mapping
from headwater.errors import MappingError

__all__ = [
    "MAX_DEPTH",
    "CompiledMapping",
    "FieldSpec",
    "MappingError",
    "check_fields",
    "coerce_output",
    "compile_mapping",
    "render_mapping",
    "validate_mapping",
]


class CompiledMapping:
    """A validated mapping; calling it renders one payload without walking the mapping again."""

    __slots__ = ("_evaluate",)

    def __init__(self, mapping: Mapping[str, Any], *, expand_keys: bool = False) -> None:
        if not isinstance(mapping, Mapping):
            raise MappingError(f"a mapping must be an object, got {type_of(mapping)}")
        root = dict(mapping)
        _validate(root, ())
        self._evaluate: _Eval = (
            self._compile_fields(root) if expand_keys else self._compile_value(root)
        )

    @staticmethod
    def _compile_value(root: dict[str, Any]) -> _Eval:
        evaluate = _evaluator(root, ())

        def render(payload: Any) -> Any:
            value = _finish(evaluate(payload))
            return None if value is UNDEFINED else value

        return render

    @staticmethod
    def _compile_fields(root: dict[str, Any]) -> _Eval:
        if _directive_name(root) is not None:
            raise MappingError("with expand_keys the mapping must be an object of fields")
        fields = _Slot()
        for name, value in root.items():
            _place(fields, name, _evaluator(value, (name,)))

        def render(payload: Any) -> Any:
            built = _build(fields, payload)
            return {} if built is UNDEFINED else built

        return render

    def __call__(self, payload: Mapping[str, Any]) -> Any:
        if not isinstance(payload, Mapping):
            raise MappingError(f"data must be an object, got {type_of(payload)}")
        try:
            return self._evaluate(payload)
        except RecursionError:
            # The mapping's own depth is bounded when it is compiled; an event can still nest
            # values deeper than copying them allows. Rejecting it beats retrying it forever.
            raise MappingError("the event nests values too deeply to map") from None


def compile_mapping(mapping: Mapping[str, Any], *, expand_keys: bool = False) -> CompiledMapping:
    """Validate once so that rendering each event is only the evaluation."""
    return CompiledMapping(mapping, expand_keys=expand_keys)


def render_mapping(
    mapping: Mapping[str, Any], payload: Mapping[str, Any], *, expand_keys: bool = False
) -> Any:
    """One-off rendering; compile the mapping instead when it serves many events."""
    return CompiledMapping(mapping, expand_keys=expand_keys)(payload)
