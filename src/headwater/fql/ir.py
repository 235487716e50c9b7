"""FQL trees in the form Segment's browser matcher reads (``@segment/tsub``'s IR).

Device-mode destination filters ship this IR in the settings document. Paths are dotted
strings, values ``{"value": v}``, lists plain arrays, everything else ``[operator, ...args]``.
The browser knows fewer functions than the server (no case conversions or casts), reads a
path by splitting on dots, and evaluates a function's arguments only one level deep, so
statements outside that subset raise ``NotRepresentable`` instead of becoming a filter that
would answer differently in the browser.
"""

from __future__ import annotations

from typing import Any

from headwater.errors import NotRepresentable
from headwater.fql.syntax import Call, Compare, ListOf, Literal, Logic, Node, Not, Path

BROWSER_FUNCTIONS = frozenset({"contains", "match", "length", "lowercase", "typeof", "semver"})


def to_ir(node: Node) -> Any:
    if isinstance(node, Path):
        if any("." in s for s in node.segments):
            raise NotRepresentable("the browser cannot read keys that contain a dot")
        return ".".join(node.segments)
    if isinstance(node, Literal):
        return {"value": node.value}
    if isinstance(node, ListOf):
        return [to_ir(item) for item in node.items]
    if isinstance(node, Call):
        if node.function not in BROWSER_FUNCTIONS:
            raise NotRepresentable(f"the browser has no {node.function}()")
        if any(isinstance(a, Call | Compare | Logic | Not) for a in node.arguments):
            raise NotRepresentable("the browser reads only paths and values as arguments")
        return [node.function, *(to_ir(a) for a in node.arguments)]
    if isinstance(node, Not):
        return ["!", to_ir(node.operand)]
    if isinstance(node, Logic):
        return [node.operator, *(to_ir(o) for o in node.operands)]
    return [node.operator, to_ir(node.left), to_ir(node.right)]
