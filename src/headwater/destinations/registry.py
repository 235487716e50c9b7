"""The destination catalog: every ``DEFINITION`` under ``destinations/catalog/``, by type, and
Segment's published Actions destinations (``actions:<directory>``) when their package is
installed.

Which install a process uses is said once, at start-up (``use_data_dir`` or
``use_actions_dir``); without that, ``HEADWATER_ACTIONS_DIR`` when set. The package's
definitions are built on first use, from the install's ``catalog.json``.
"""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Protocol

from headwater.destinations import catalog
from headwater.destinations.definition import DestinationDefinition
from headwater.destinations.functions import function_name, is_function_type
from headwater.errors import CatalogNotInstalled, UnknownDestinationType

_lock = threading.Lock()
_actions_dir: Path | None = None
_chosen = False
_package: dict[str, DestinationDefinition] | None = None
_failed: dict[str, str] = {}
_all: dict[str, DestinationDefinition] | None = None


class FunctionDefinitions(Protocol):
    """Destination functions' definitions (``function:<name>``), made from the functions."""

    def definition(self, name: str) -> DestinationDefinition | None: ...

    def definitions(self) -> list[DestinationDefinition]: ...


_functions: FunctionDefinitions | None = None
# A change of configuration in progress (``headwater apply``): the functions it is creating, seen
# inside its own transaction before they are committed.
_applying: ContextVar[FunctionDefinitions | None] = ContextVar("_applying", default=None)


@cache
def native_definitions() -> dict[str, DestinationDefinition]:
    """Headwater's own destinations, by type; imported once."""
    found: dict[str, DestinationDefinition] = {}
    for module_info in sorted(pkgutil.iter_modules(catalog.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{catalog.__name__}.{module_info.name}")
        definition = getattr(module, "DEFINITION", None)
        if not isinstance(definition, DestinationDefinition):
            continue
        if definition.type in found:
            raise RuntimeError(f"two destinations have the type {definition.type!r}")
        found[definition.type] = definition
    _check_names(found.values())
    return found


def use_actions_dir(actions_dir: Path | None) -> None:
    """Say which install of the Actions package this process uses (None: none)."""
    global _actions_dir, _chosen, _package, _all
    with _lock:
        _actions_dir, _chosen = actions_dir, True
        _package = _all = None
        _failed.clear()


def reset() -> None:
    """Back to the default: ``HEADWATER_ACTIONS_DIR`` when set, else no package."""
    global _chosen
    use_actions_dir(None)
    _chosen = False


def use_data_dir(data_dir: Path) -> None:
    """The install that belongs to a data directory (``HEADWATER_ACTIONS_DIR`` when set)."""
    from headwater.destinations.runtime.install import actions_dir

    use_actions_dir(actions_dir(data_dir))


def actions_dir() -> Path | None:
    """The install this process uses, if one was said or ``HEADWATER_ACTIONS_DIR`` is set."""
    if _chosen:
        return _actions_dir
    shared = os.environ.get("HEADWATER_ACTIONS_DIR")
    return Path(shared) if shared else None


def package_definitions() -> dict[str, DestinationDefinition]:
    """The Actions package's destinations, by type; empty when no catalog is installed."""
    global _package
    with _lock:
        if _package is None:
            _package = _load_package()
        return _package


def package_failures() -> dict[str, str]:
    """Each package definition that did not build, with why (``headwater catalog update``)."""
    package_definitions()
    return dict(_failed)


def _load_package() -> dict[str, DestinationDefinition]:
    from headwater.destinations.runtime.definitions import build_all, catalog_path, read_catalog

    where = actions_dir()
    if where is None or not catalog_path(where).exists():
        return {}
    built, failed = build_all(read_catalog(where))
    _failed.update(failed)
    return built


def definitions() -> dict[str, DestinationDefinition]:
    """Every destination definition, by type: Headwater's own first, then the package's."""
    global _all
    found = _all
    if found is None:
        found = {**native_definitions(), **package_definitions()}
        _check_names(package_definitions().values())
        _all = found
    return found


def _check_names(found: Iterable[DestinationDefinition]) -> None:
    """Two destinations of one kind may not answer to one name. A native destination and a
    package one may (Segment's "Slack" and "Mixpanel (Actions)" exist as both): an instance is
    addressed by its catalog name whichever implementation it uses."""
    names: dict[str, str] = {}
    for definition in found:
        for name in definition.integration_names:
            if name in names:
                raise RuntimeError(
                    f"{definition.type!r} and {names[name]!r} both answer to {name!r}"
                )
            names[name] = definition.type


def use_functions(functions: FunctionDefinitions | None) -> None:
    """Say where this process finds destination functions' definitions (None: nowhere, and a
    ``function:`` type is unknown). The functions' store sits beside this package, so the
    process that has both tells the catalog (``delivery.functions.FunctionCatalog``)."""
    global _functions
    _functions = functions


@contextmanager
def functions_while(functions: FunctionDefinitions) -> Iterator[None]:
    """Destination functions' definitions from ``functions`` for this context only: a
    configuration applied in one transaction names functions it creates in that transaction."""
    token = _applying.set(functions)
    try:
        yield
    finally:
        _applying.reset(token)


def _current_functions() -> FunctionDefinitions | None:
    return _applying.get() or _functions


def function_definitions() -> list[DestinationDefinition]:
    """The workspace's destination functions as catalog entries (none when not told where)."""
    functions = _current_functions()
    return functions.definitions() if functions is not None else []


def get(destination_type: str) -> DestinationDefinition:
    try:
        return definitions()[destination_type]
    except KeyError:
        pass
    if is_function_type(destination_type):
        name = function_name(destination_type)
        functions = _current_functions()
        found = functions.definition(name) if functions is not None else None
        if found is not None:
            return found
        raise UnknownDestinationType(
            f"unknown destination type {destination_type!r}: there is no deployed destination "
            f"function named {name!r}"
        )
    from headwater.destinations.runtime.definitions import is_package_type

    if is_package_type(destination_type) and not package_definitions():
        where = actions_dir()
        raise CatalogNotInstalled(
            f"the Actions catalog is not installed ({where or 'no actions directory'} has no "
            f"catalog.json), so {destination_type!r} is unknown; run `headwater catalog install`"
        )
    native = sorted(native_definitions())
    close = difflib.get_close_matches(destination_type, definitions(), n=3)
    package = len(definitions()) - len(native)
    raise UnknownDestinationType(
        f"unknown destination type {destination_type!r}; "
        + (f"did you mean {', '.join(close)}? " if close else "")
        + f"known types: {', '.join(native)}"
        + (f", and {package} actions:* types (`headwater catalog` lists them)" if package else "")
    )


def type_named(name: str) -> str:
    """The destination type a type or catalog name (``Amplitude`` → ``amplitude``) stands for;
    UnknownDestinationType when neither."""
    found = definitions()
    if name in found:
        return name
    for definition in found.values():
        if definition.name == name:
            return definition.type
    return get(name).type


def integration_names() -> frozenset[str]:
    """Every name the integrations object may use for a destination of the catalog."""
    return frozenset(n for d in definitions().values() for n in d.integration_names)
