"""The layering rule of docs/architecture.md, checked over the import graph.

Packages sit in layers along the data flow; a module imports its own package and lower layers
only, never a package beside it or above it. A new import that breaks the rule fails here,
which is the moment to move the shared code down rather than reach sideways.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. A name is a package or module under ``headwater``; the longest name that
# contains a module decides its layer (``config.settings`` sits below the rest of ``config``).
LAYERS: list[list[str]] = [
    [
        "",
        "reasons",
        "timestamps",
        "clock",
        "collector",
        "admin_client",
        "engage.definition",
        "privacy.erasure",
        "destinations.javascript",  # JavaScript's value rules, read by linear_regex below
        "functions.contract",  # what a function's invocation is, read by every stage
    ],
    ["errors"],
    # linear_regex is shared by destinations' filters and the Privacy Portal's value matchers.
    [
        "store",
        "fql",
        "observe",
        "engage.language",
        "destinations.linear_regex",
        "destinations.runtime.node",  # finding Node.js: the actions runtime and functions' sandbox
    ],
    [
        "destinations",
        "config.settings",
        "ingest.normalize",
        "protocols",
        "unify",
        "engage.builder",
        "privacy",
        "functions",
        "audit",
        "iam",  # roles, grants and the access decision; users, tokens, labels (store below)
    ],
    ["delivery", "warehouse", "ingest.internal", "engage"],
    ["pipeline", "ingest"],
    ["api", "config", "web"],
    ["server", "supervisor", "connections", "hot_routes", "handoff"],
    ["cli"],
    ["__main__"],
]


def _unit(module: str) -> str:
    """The layer entry a dotted module (without ``headwater.``) belongs to."""
    best = ""
    for layer in LAYERS:
        for name in layer:
            if name and (module == name or module.startswith(name + ".")) and len(name) > len(best):
                best = name
    return best


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _imports() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every ``headwater`` import."""
    found: list[tuple[str, str, int]] = []
    for path in sorted((SRC / "headwater").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        module = ".".join(parts[1:]).removesuffix(".__init__").removesuffix("__init__")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if not isinstance(node, ast.ImportFrom | ast.Import):
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "headwater":
                    names = [alias.name for alias in node.names]
                elif node.module.startswith("headwater."):
                    names = [node.module.removeprefix("headwater.")]
            elif isinstance(node, ast.Import):
                names = [
                    a.name.removeprefix("headwater.")
                    for a in node.names
                    if a.name.startswith("headwater.")
                ]
            found.extend((module, name, node.lineno) for name in names)
    return found


def test_every_module_has_a_layer() -> None:
    for path in (SRC / "headwater").rglob("*.py"):
        parts = path.relative_to(SRC / "headwater").with_suffix("").parts
        if len(parts) > 1 or parts[0] == "__init__":
            continue
        assert _unit(parts[0]), f"{path}: add it to a layer in LAYERS"


def test_imports_point_down() -> None:
    wrong = []
    for module, imported, line in _imports():
        here, there = _unit(module), _unit(imported)
        if here == there:
            continue
        if _layer(there) >= _layer(here):
            wrong.append(
                f"headwater.{module}:{line} imports headwater.{imported} "
                f"(layer {_layer(there)} {there or 'root'!r} from layer {_layer(here)})"
            )
    assert not wrong, "imports that break the layering of docs/architecture.md:\n" + "\n".join(
        wrong
    )


def test_the_rule_catches_an_upward_import() -> None:
    assert _layer(_unit("store.log")) < _layer(_unit("destinations.registry"))
    assert _unit("config.settings") == "config.settings"
    assert _unit("config.apply") == "config"
    assert _layer(_unit("config.settings")) < _layer(_unit("ingest.app"))
