"""The mapping kit's directives, compiled to closures once per mapping."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from headwater.destinations.javascript import (
    _SURROGATE,
    UNDEFINED,
    WHITESPACE,
    from_utf16_units,
    json_parse,
    json_stringify,
    loosely_empty,
    number_to_string,
    own_keys,
    to_string,
    truthy,
    type_of,
    utf16_len,
    utf16_units,
)
from headwater.destinations.mapping.errors import _check_depth, _error, _Where
from headwater.destinations.mapping.paths import _get, _Key, _path_from_directive, _path_keys
from headwater.destinations.mapping.validation import (
    _MAX_PATTERN_LENGTH,
    _MAX_REPLACEMENT_LENGTH,
    _validate,
)
from headwater.errors import MappingError

_Eval = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Const:
    """A rendered value known when compiling, so containers of constants fold into one."""

    value: Any


_Compiled = _Eval | _Const


def _as_eval(compiled: _Compiled) -> _Eval:
    if isinstance(compiled, _Const):
        value = compiled.value
        return lambda _payload: value
    return compiled


def _failing(message: str, where: _Where) -> _Eval:
    """An evaluator for a part actions-core only rejects when it gets there."""

    def fail(_payload: Any) -> Any:
        raise _error(message, where)

    return fail


def _directive_name(node: Mapping[Any, Any]) -> str | None:
    """actions-core's ``isDirective`` and the key ``runDirective`` picks."""
    name = None
    for key in node:
        if isinstance(key, str) and key.startswith("@"):
            if name is None:
                name = key
        elif key != "_metadata":
            return None
    return name


def _compile(node: Any, where: _Where) -> _Compiled:
    if isinstance(node, dict | list):
        _check_depth(where)
    if isinstance(node, dict):
        name = _directive_name(node)
        if name is not None:
            build = _DIRECTIVES.get(name)
            if build is None:
                return _failing(f"{name} is not a valid directive", where)
            return build(node[name], (*where, name))
        fields = [(key, _compile(value, (*where, key))) for key, value in node.items()]
        if all(isinstance(compiled, _Const) for _, compiled in fields):
            return _Const({k: c.value for k, c in fields if isinstance(c, _Const)})
        evaluators = [(key, _as_eval(compiled)) for key, compiled in fields]
        return lambda payload: {key: evaluate(payload) for key, evaluate in evaluators}
    if isinstance(node, list):
        items = [_compile(value, (*where, i)) for i, value in enumerate(node)]
        if all(isinstance(compiled, _Const) for compiled in items):
            return _Const([c.value for c in items if isinstance(c, _Const)])
        item_evaluators = [_as_eval(compiled) for compiled in items]
        return lambda payload: [evaluate(payload) for evaluate in item_evaluators]
    return _Const(node)


def _evaluator(node: Any, where: _Where) -> _Eval:
    return _as_eval(_compile(node, where))


def _path_reader(keys: tuple[_Key, ...]) -> _Eval:
    return lambda payload: _get(payload, keys)


def _compile_path(arg: Any, where: _Where) -> _Compiled:
    if isinstance(arg, str):
        return _path_reader(_path_from_directive(arg))
    resolve_path = _evaluator(arg, where)

    def path(payload: Any) -> Any:
        text = resolve_path(payload)
        if not isinstance(text, str):
            raise _error(f"@path: expected string, got {type_of(text)}", where)
        return _get(payload, _path_from_directive(text))

    return path


def _placeholders(text: str, braces: int) -> Iterator[tuple[int, int, str]]:
    """(start, end, inner) of each ``{{inner}}`` (``braces`` = 2) or ``{{{inner}}}`` (3).

    The matches of actions-core's ``/\\{\\{([^}]+)\\}\\}/g`` (and its triple form), found in
    one pass: a template can come from the event, and the regular expression rescans the rest
    of the text from every ``{{`` that is never closed, which is quadratic.
    """
    opening, closing = "{" * braces, "}" * braces
    close = -1  # the first "}" at or after the current inner start, once looked up
    at = text.find(opening)
    while at >= 0:
        inner = at + braces
        if close < inner:
            close = text.find("}", inner)
            if close < 0:
                return  # no "}" is left, so no placeholder can close
        if close > inner and text.startswith(closing, close):
            yield at, close + braces, text[inner:close]
            at = text.find(opening, close + braces)
        else:
            at = text.find(opening, at + 1)


def _template_parts(text: str, braces: int) -> list[str]:
    """``re.split`` of the template by its placeholders: text, inner, text, ..., text."""
    parts: list[str] = []
    done = 0
    for start, end, inner in _placeholders(text, braces):
        parts += (text[done:start], inner)
        done = end
    parts.append(text[done:])
    return parts


def _placeholder(payload: Any, inner: str) -> str:
    value = _get(payload, _path_keys(inner.strip(WHITESPACE)))
    return "" if value is None or value is UNDEFINED else to_string(value)


def _substitute_placeholders(text: str, braces: int, payload: Any) -> str:
    parts = _template_parts(text, braces)
    for i in range(1, len(parts), 2):
        parts[i] = _placeholder(payload, parts[i])
    return "".join(parts)


def _render_template(template: str, payload: Any) -> str:
    return _substitute_placeholders(_substitute_placeholders(template, 3, payload), 2, payload)


def _compile_template(arg: Any, where: _Where) -> _Compiled:
    if isinstance(arg, str) and next(_placeholders(arg, 3), None) is None:
        # Only the second pass applies, so the template splits once into text and keys.
        parts = _template_parts(arg, 2)
        if len(parts) == 1:
            return _Const(arg)
        texts = parts[0::2]
        keys = [_path_keys(inner.strip(WHITESPACE)) for inner in parts[1::2]]
        last = texts[-1]
        pieces = list(zip(texts, keys, strict=False))

        def template(payload: Any) -> str:
            out = []
            for text, key in pieces:
                out.append(text)
                value = _get(payload, key)
                if value is not None and value is not UNDEFINED:
                    out.append(value if isinstance(value, str) else to_string(value))
            out.append(last)
            return "".join(out)

        return template
    resolve_template = _evaluator(arg, where)

    def dynamic_template(payload: Any) -> str:
        text = resolve_template(payload)
        if not isinstance(text, str):
            raise _error(f"@template: expected string, got {type_of(text)}", where)
        return _render_template(text, payload)

    return dynamic_template


def _compile_if(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@if requires an object with an "exists" key', where)
    exists = opts.get("exists", UNDEFINED)
    blank = opts.get("blank", UNDEFINED)
    if not truthy(exists) and not truthy(blank):
        return _failing('@if requires an "exists" key or a "blank" key', where)
    test_blank = exists is UNDEFINED
    if test_blank:
        condition = _evaluator(blank, (*where, "blank"))
    else:
        condition = _evaluator(exists, (*where, "exists"))
    then_ = opts.get("then", UNDEFINED)
    when_true = None if then_ is UNDEFINED else _evaluator(then_, (*where, "then"))
    else_ = opts.get("else", UNDEFINED)
    when_false = _evaluator(else_, (*where, "else")) if truthy(else_) else None

    def if_(payload: Any) -> Any:
        value = condition(payload)
        holds = value is not UNDEFINED and value is not None
        if holds and test_blank:
            holds = not loosely_empty(value)
        branch = when_true if holds else when_false
        return UNDEFINED if branch is None else branch(payload)

    return if_


def _compile_case(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@case requires an object with a "operator" key', where)
    operator = opts.get("operator", UNDEFINED)
    if not truthy(operator):
        return _failing('@case requires a "operator" key', where)
    value = opts.get("value", UNDEFINED)
    if not truthy(value):
        return _Const(UNDEFINED)
    resolve_value = _evaluator(value, (*where, "value"))

    def case(payload: Any) -> Any:
        resolved = resolve_value(payload)
        if not isinstance(resolved, str):
            return resolved
        if operator == "lower":
            return resolved.lower()
        if operator == "upper":
            return resolved.upper()
        raise _error('operator key should have a value of "lower" or "upper"', where)

    return case


@lru_cache(maxsize=65536)
def _fold_char(char: str) -> str:
    """Canonicalize of a non-Unicode, case-insensitive RegExp, one UTF-16 unit at a time."""
    if ord(char) > 0xFFFF:
        return char  # two surrogates in JavaScript, neither of which has a case
    upper = char.upper()
    if len(upper) != 1 or (ord(char) >= 128 and ord(upper) < 128):
        return char
    return upper


def _fold(text: str) -> str:
    return text.upper() if text.isascii() else "".join(map(_fold_char, text))


def _substitute(replacement: str, text: str, start: int, end: int) -> str:
    """``GetSubstitution`` for a pattern without capture groups."""
    out = []
    i = 0
    while i < len(replacement):
        char = replacement[i]
        following = replacement[i + 1 : i + 2]
        if char == "$" and following in ("$", "&", "`", "'"):
            if following == "$":
                out.append("$")
            elif following == "&":
                out.append(text[start:end])
            elif following == "`":
                out.append(text[:start])
            else:
                out.append(text[end:])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _replace_text(text: str, pattern: str, replacement: str, ignore_case: bool, every: bool) -> str:
    if not ignore_case and "$" not in replacement:
        return text.replace(pattern, replacement, -1 if every else 1)
    haystack, needle = (_fold(text), _fold(pattern)) if ignore_case else (text, pattern)
    out = []
    done = 0
    start = haystack.find(needle)
    while start >= 0:
        end = start + len(needle)
        out.append(text[done:start])
        out.append(_substitute(replacement, text, start, end))
        done = end
        if not every:
            break
        start = haystack.find(needle, end)
    out.append(text[done:])
    return "".join(out)


def _replace_once(text: str, pattern: str, replacement: str, ignore_case: bool, every: bool) -> str:
    if utf16_len(pattern) > _MAX_PATTERN_LENGTH:
        raise MappingError(
            f'@replace requires a "pattern" less than {_MAX_PATTERN_LENGTH} characters'
        )
    if utf16_len(replacement) > _MAX_REPLACEMENT_LENGTH:
        raise MappingError(
            f'@replace requires a "replacement" less than {_MAX_REPLACEMENT_LENGTH} characters'
        )
    if _SURROGATE.search(pattern):  # a lone surrogate can match half of a pair in JavaScript
        units = _replace_text(
            utf16_units(text), utf16_units(pattern), utf16_units(replacement), ignore_case, every
        )
        return from_utf16_units(units)
    return _replace_text(text, pattern, replacement, ignore_case, every)


def _compile_replace(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@replace requires an object with a "pattern" key', where)
    pattern = opts.get("pattern", UNDEFINED)
    if not truthy(pattern):
        return _failing('@replace requires a "pattern" key', where)
    replacement = opts.get("replacement")
    replacement = "" if replacement is None else replacement
    pattern2 = opts.get("pattern2", UNDEFINED)
    replacement2 = opts.get("replacement2")
    if truthy(pattern2) and replacement2 is None:
        replacement2 = ""
    ignore_case = opts.get("ignorecase")
    ignore_case = False if ignore_case is None else ignore_case
    every = opts.get("global")
    every = True if every is None else every
    value = opts.get("value", UNDEFINED)
    if not truthy(value):
        return _Const(UNDEFINED)
    resolve_value = _evaluator(value, (*where, "value"))
    usable = (
        isinstance(pattern, str)
        and isinstance(replacement, str)
        and isinstance(ignore_case, bool)
        and isinstance(every, bool)
    )
    second: tuple[str, str] | None = None
    if truthy(pattern2) and isinstance(pattern2, str) and isinstance(replacement2, str):
        second = (pattern2, replacement2)

    def replace(payload: Any) -> Any:
        text = resolve_value(payload)
        if isinstance(text, bool):
            text = "true" if text else "false"
        elif isinstance(text, int | float):
            text = number_to_string(text)
        if not (usable and isinstance(text, str)):
            return ""
        try:
            text = _replace_once(text, pattern, replacement, ignore_case, every)
            if second is not None:
                text = _replace_once(text, *second, ignore_case, every)
        except MappingError as error:
            raise _error(error.message, where) from None
        return text

    return replace


def _compile_array_path(arg: Any, where: _Where) -> _Compiled:
    if not isinstance(arg, list):
        return _failing(f"@arrayPath expected array, got {type_of(arg)}", where)
    path = arg[0] if arg else UNDEFINED
    shape = arg[1] if len(arg) > 1 else UNDEFINED
    if isinstance(path, str):
        find_root = _path_reader(_path_from_directive(path))
    else:
        find_root = _evaluator(path, (*where, 0))
    if not (isinstance(shape, dict) and shape):
        return find_root
    render_item = _evaluator(shape, (*where, 1))

    def array_path(payload: Any) -> Any:
        root = find_root(payload)
        if isinstance(root, list):
            return [render_item(item) for item in root]
        if isinstance(root, dict):
            return [render_item(root)]
        return root

    return array_path


def _flatten(value: Any, separator: str, omit_arrays: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        entries: Iterable[tuple[str, Any]]
        if isinstance(node, dict):
            entries = ((key, node[key]) for key in own_keys(node))
        elif isinstance(node, list) and not omit_arrays:
            entries = ((str(i), item) for i, item in enumerate(node))
        else:
            out[prefix] = node
            return
        for key, child in entries:
            walk(child, f"{prefix}{separator}{key}" if prefix else key)

    walk(value, "")
    return out


def _compile_flatten(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@flatten requires an object with a "separator" key', where)
    separator = opts.get("separator", UNDEFINED)
    if not truthy(separator):
        return _failing('@flatten requires a "separator" key', where)
    resolve_separator = _evaluator(separator, (*where, "separator"))
    resolve_value = _evaluator(opts.get("value", UNDEFINED), (*where, "value"))
    omit_arrays = truthy(opts.get("omitArrays", UNDEFINED))

    def flatten(payload: Any) -> Any:
        resolved_separator = resolve_separator(payload)
        if not isinstance(resolved_separator, str):
            raise _error("@flatten requires a string separator", where)
        return _flatten(resolve_value(payload), resolved_separator, omit_arrays)

    return flatten


def _compile_json(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@json requires an object with a "value" key', where)
    mode = opts.get("mode", UNDEFINED)
    if not truthy(mode):
        return _failing('@json requires a "mode" key', where)
    value = opts.get("value", UNDEFINED)
    if not truthy(value):
        return _failing('@json requires a "value" key', where)
    resolve_value = _evaluator(value, (*where, "value"))
    if mode == "encode":
        return lambda payload: json_stringify(resolve_value(payload))
    if mode == "decode":

        def decode(payload: Any) -> Any:
            resolved = resolve_value(payload)
            return json_parse(resolved) if isinstance(resolved, str) else resolved

        return decode

    def unknown_mode(payload: Any) -> Any:
        resolve_value(payload)
        return UNDEFINED

    return unknown_mode


def _assign(target: dict[str, Any], source: Any) -> None:
    """``Object.assign`` of one source, which copies a string's characters and an array's items."""
    if isinstance(source, dict):
        target.update(source)
    elif isinstance(source, list):
        target.update((str(i), item) for i, item in enumerate(source))
    elif isinstance(source, str):
        target.update((str(i), unit) for i, unit in enumerate(utf16_units(source)))


def _compile_merge(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing(
            '@merge requires an object with an "objects" key and a "direction" key', where
        )
    direction = opts.get("direction", UNDEFINED)
    if not truthy(direction):
        return _failing('@merge requires a "direction" key', where)
    resolve_direction = _evaluator(direction, (*where, "direction"))
    objects = opts.get("objects", UNDEFINED)
    if not truthy(objects):
        message = '@merge requires a "objects" key'
    elif not isinstance(objects, list):
        kind = "object" if isinstance(objects, dict) else type_of(objects)
        message = f"@merge: expected opts.array, got {kind}"
    else:
        resolvers = [_evaluator(obj, (*where, "objects", i)) for i, obj in enumerate(objects)]

        def merge(payload: Any) -> Any:
            left = resolve_direction(payload) == "left"
            resolved = [resolve(payload) for resolve in resolvers]
            out: dict[str, Any] = {}
            for source in reversed(resolved) if left else resolved:
                _assign(out, source)
            return out

        return merge

    def fail(payload: Any) -> Any:
        resolve_direction(payload)  # actions-core renders the direction before this check
        raise _error(message, where)

    return fail


def _remove_undefined(value: Any) -> Any:
    """actions-core's ``removeUndefined``: gone from objects, kept inside arrays."""
    if isinstance(value, dict):
        return {k: _remove_undefined(v) for k, v in value.items() if v is not UNDEFINED}
    if isinstance(value, list):
        return [_remove_undefined(item) for item in value]
    return value


def _compile_transform(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing(
            '@transform requires an object with an "apply" key and a "mapping" key', where
        )
    mapping = opts.get("mapping", UNDEFINED)
    if not truthy(mapping):
        return _failing('@transform requires a "mapping" key', where)
    apply = opts.get("apply", UNDEFINED)
    if not truthy(apply):
        return _failing('@transform requires a "apply" key', where)
    if not isinstance(apply, dict):
        return _failing('@transform "apply" key should be an object', where)
    invalid: MappingError | None = None
    try:
        _validate(apply, (*where, "apply"))  # the nested transform validates "apply" each time
    except MappingError as error:
        invalid = error
    render_apply = _evaluator(apply, (*where, "apply"))
    render_mapping_ = _evaluator(mapping, (*where, "mapping"))

    def transform(payload: Any) -> Any:
        if payload is UNDEFINED:
            payload = {}  # the nested transform's default argument
        if not isinstance(payload, Mapping):
            raise _error(f"data must be an object, got {type_of(payload)}", where)
        if invalid is not None:
            raise invalid
        return render_mapping_(_remove_undefined(render_apply(payload)))

    return transform


def _clean_nulls(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {
        key: UNDEFINED if item is None else _clean_nulls(item) if isinstance(item, dict) else item
        for key, item in value.items()
    }


def _compile_exclude_when_null(arg: Any, where: _Where) -> _Compiled:
    resolve_value = _evaluator(arg, where)

    def exclude_when_null(payload: Any) -> Any:
        value = resolve_value(payload)
        return UNDEFINED if value is None else _clean_nulls(value)

    return exclude_when_null


_DIRECTIVES: Final[dict[str, Callable[[Any, _Where], _Compiled]]] = {
    "@if": _compile_if,
    "@case": _compile_case,
    "@replace": _compile_replace,
    "@arrayPath": _compile_array_path,
    "@path": _compile_path,
    "@template": _compile_template,
    "@literal": _compile,
    "@flatten": _compile_flatten,
    "@json": _compile_json,
    "@merge": _compile_merge,
    "@transform": _compile_transform,
    "@excludeWhenNull": _compile_exclude_when_null,
}


def _finish(value: Any) -> Any:
    """The output as plain JSON values, sharing nothing with the payload or the mapping."""
    if isinstance(value, dict):
        return {key: _finish(item) for key, item in value.items() if item is not UNDEFINED}
    if isinstance(value, list):
        return [None if item is UNDEFINED else _finish(item) for item in value]
    return value
