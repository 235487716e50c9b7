"""``headwater catalog``: the destinations Headwater can deliver to, and installing Segment's.

Listing reads the same registry the server does (Headwater's own destinations, and Segment's
Actions destinations from the install of ``--dir`` or the data directory's), so what it shows
is what ``headwater.yaml`` and the REST API accept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from headwater.destinations import listing, registry
from headwater.destinations.definition import DestinationDefinition
from headwater.destinations.runtime import install as installer
from headwater.errors import HeadwaterError, UnknownDestinationType

NOT_INSTALLED = (
    "Segment's Actions destinations are not installed here ({where}); "
    "`headwater catalog install` installs them"
)


def run(words: list[str], directory: Path | None, data_dir: Path, tarball: Path | None) -> int:
    target = directory or installer.actions_dir(data_dir)
    registry.use_actions_dir(target)
    command, rest = (words[0], words[1:]) if words else ("", [])
    try:
        if command == "show":
            if len(rest) != 1:
                raise SystemExit("headwater catalog show: name one destination type")
            return show(rest[0])
        if command == "install":
            _no_more(rest, "install")
            return install(target, tarball)
        if tarball is not None:
            raise SystemExit("headwater catalog: --from goes with `catalog install`")
        if command == "update":
            if len(rest) > 1:
                raise SystemExit("headwater catalog update: at most one VERSION")
            return update(target, rest[0] if rest else "latest")
        if command == "pack":
            if len(rest) != 1:
                raise SystemExit("headwater catalog pack: name the .tgz file to write")
            return pack(target, Path(rest[0]))
        return list_destinations(" ".join(words), target)
    except HeadwaterError as exc:
        raise SystemExit(f"headwater catalog: {exc}") from None


def _no_more(rest: list[str], command: str) -> None:
    if rest:
        raise SystemExit(f"headwater catalog {command}: unexpected {' '.join(rest)}")


def list_destinations(search: str, target: Path) -> int:
    found = listing.search(registry.definitions().values(), search)
    rows = [(d.type, d.name, listing.kind(d)) for d in found]
    if rows:
        width = [max(len(row[i]) for row in rows) for i in range(2)]
        print(f"{'TYPE':<{width[0]}}  {'NAME':<{width[1]}}  KIND")
        for kind_, name, how in rows:
            print(f"{kind_:<{width[0]}}  {name:<{width[1]}}  {how}")
    actions = sum(1 for row in rows if row[2] == listing.ACTIONS)
    matching = f" matching {search!r}" if search else ""
    print(f"{len(rows)} destinations{matching} ({len(rows) - actions} native, {actions} actions)")
    if not registry.package_definitions():
        print(NOT_INSTALLED.format(where=target))
    return 0


def show(destination_type: str) -> int:
    try:
        definition = registry.get(destination_type)
    except UnknownDestinationType as exc:
        raise SystemExit(f"headwater catalog show: {exc}") from None
    for line in describe(definition):
        print(line)
    return 0


def describe(d: DestinationDefinition) -> list[str]:
    """One destination as ``catalog show`` prints it."""
    how = listing.kind(d)
    where = f", package directory {d.package_directory}" if d.package_directory else ""
    lines = [f"{d.type}: {d.name} ({how}{where})"]
    if d.aliases:
        lines.append(f"Also answers to: {', '.join(d.aliases)}")
    if d.description:
        lines.append(d.description)
    schema = listing.settings_schema(d)
    required = set(schema.get("required", ()))
    lines.append("")
    lines.append("Settings:" if schema.get("properties") else "Settings: none")
    for name, spec in schema.get("properties", {}).items():
        lines.append(f"  {name}: {_setting(spec, name in required, name in d.secrets)}")
        if spec.get("description"):
            lines.append(f"      {_one_line(spec['description'])}")
    if d.actions:
        lines.append("")
        lines.append("Actions:")
    for action in d.actions.values():
        trigger = " ".join(action.default_trigger.split())
        extra = [f"default trigger: {trigger}"] if trigger else []
        if action.batches:
            extra.append("batches")
        lines.append(
            f"  {action.name}: {action.title}" + (f" ({'; '.join(extra)})" if extra else "")
        )
        for name, field in action.fields.items():
            parts = [field.type + ("[]" if field.multiple else "")]
            if field.required:
                parts.append("required")
            if name in action.secret_fields:
                parts.append("secret")
            if field.choices:
                parts.append("one of " + ", ".join(field.choices))
            if field.default is not None:
                parts.append("default " + json.dumps(field.default, ensure_ascii=False))
            lines.append(f"    {name}: {', '.join(parts)}")
    if d.presets:
        lines.append("")
        lines.append("Presets:")
    for preset in d.presets:
        when = f"when {preset.trigger}" if preset.trigger else "for a specific event"
        automatic = "automatic" if preset.automatic else "specific event"
        lines.append(f"  {preset.name} ({automatic}): {preset.action} {when}")
    if d.hooks:
        lines.append("")
        lines.append(f"Hooks: {', '.join(sorted(d.hooks))}")
    return lines


def _setting(spec: dict[str, Any], required: bool, secret: bool) -> str:
    kinds = spec.get("anyOf", [spec])
    types = [k.get("type", "any") for k in kinds if k.get("type") != "null"]
    parts = ["/".join(types) or "any"]
    if required:
        parts.append("required")
    if secret:
        parts.append("secret")
    choices = next((k["enum"] for k in kinds if "enum" in k), None)
    if choices:
        parts.append("one of " + ", ".join(map(str, choices)))
    if "default" in spec and spec["default"] is not None:
        parts.append("default " + json.dumps(spec["default"], ensure_ascii=False))
    return ", ".join(parts)


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _progress(message: str) -> None:
    print(message, flush=True)


def install(target: Path, tarball: Path | None) -> int:
    if installer.installed(target):
        print(f"already installed in {target} ({installer.pinned_version()})")
        return 0
    if tarball is not None:
        from headwater.destinations.runtime.pack import unpack

        unpack(tarball, target, progress=_progress)
    else:
        installer.install(target, progress=_progress)
    return _loaded(target)


def update(target: Path, version: str, package: Path = installer.PACKAGE) -> int:
    """Pin ``version`` (the newest by default) in ``package``'s lock file, install it and load
    every definition; when anything fails, go back to the lock file as it was."""
    files = ("package.json", "package-lock.json")
    before = {name: (package / name).read_bytes() for name in files}
    old = installer.pinned_version(package)
    try:
        new = installer.pin(version, progress=_progress, package=package)
        installer.install(target, progress=_progress, package=package, force=True)
        failed = _loaded(target)
    except HeadwaterError as exc:
        print(f"headwater catalog update: {exc}", file=sys.stderr)
        failed = 1
    if not failed:
        print(f"{installer.PACKAGE_NAME} {old} -> {new}; the lock file is in {package}")
        return 0
    print(
        f"keeping {installer.PACKAGE_NAME} {old}: the update did not install or load",
        file=sys.stderr,
    )
    for name, content in before.items():
        (package / name).write_bytes(content)
    installer.install(target, progress=_progress, package=package, force=True)
    return 1


def pack(target: Path, output: Path) -> int:
    from headwater.destinations.runtime.pack import pack as make

    if not installer.installed(target):
        raise SystemExit(f"headwater catalog pack: nothing installed in {target}")
    make(target, output, progress=_progress)
    return 0


def _loaded(target: Path) -> int:
    """Build every definition of the fresh install; report each that does not load."""
    registry.use_actions_dir(target)
    built = registry.package_definitions()
    failed = registry.package_failures()
    from headwater.destinations.runtime.definitions import read_catalog

    for problem in read_catalog(target).get("failed") or ():
        failed[f"actions:{problem.get('directory')}"] = str(problem.get("error"))
    print(f"loaded {len(built)} Actions destinations from {target}")
    for kind_, error in sorted(failed.items()):
        print(f"  {kind_} did not load: {error}", file=sys.stderr)
    return 1 if failed else 0
