"""An installed Actions package as one tarball, for machines that cannot reach the npm registry.

``headwater catalog pack`` writes it from an install; ``catalog install --from`` unpacks it. It
holds the install as is (``node_modules``, the lock file, ``catalog.json`` and the stamp), so
it is accepted only where the lock file is the same: the stamp says which.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from headwater.destinations.runtime import install as installer

MEMBERS = ("package.json", "package-lock.json", "node_modules", installer.CATALOG, installer.STAMP)


def pack(target: Path, output: Path, *, progress: Callable[[str], None] = print) -> Path:
    progress(f"packing {target} into {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with tarfile.open(partial, "w:gz") as archive:
        for name in MEMBERS:
            archive.add((target / name).resolve(), arcname=name)  # a linked node_modules too
    partial.replace(output)
    progress(f"packed {output} ({output.stat().st_size // 1_000_000} MB)")
    return output


def unpack(tarball: Path, target: Path, *, progress: Callable[[str], None] = print) -> None:
    """Install from ``tarball`` into ``target``: unpacked beside it, checked, then moved in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"unpacking {tarball} into {target}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpacking-") as scratch:
        staging = Path(scratch)
        try:
            with tarfile.open(tarball, "r:gz") as archive:
                archive.extractall(staging, filter="data")
        except (OSError, tarfile.TarError) as exc:
            raise installer.InstallError(f"cannot unpack {tarball}: {exc}") from exc
        try:
            stamp = json.loads((staging / installer.STAMP).read_text())
        except (OSError, ValueError):
            raise installer.InstallError(
                f"{tarball} is not a tarball of `headwater catalog pack` (no stamp)"
            ) from None
        if not installer.installed(staging):
            raise installer.InstallError(
                f"{tarball} holds {installer.PACKAGE_NAME} {stamp.get('version')} from another "
                f"lock file than this Headwater's ({installer.pinned_version()}); pack it with "
                "the same Headwater version"
            )
        target.mkdir(parents=True, exist_ok=True)
        (target / installer.STAMP).unlink(missing_ok=True)  # incomplete until the stamp is back
        for name in MEMBERS:
            if name == installer.STAMP:
                continue
            old = target / name
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink(missing_ok=True)
            (staging / name).replace(old)
        (staging / installer.STAMP).replace(target / installer.STAMP)
    progress(f"installed {installer.PACKAGE_NAME} {stamp.get('version')} from {tarball}")
