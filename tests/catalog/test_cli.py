"""``headwater catalog``: listing, search, show, and installing (idempotent, by its stamp)."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from headwater.cli import main
from headwater.destinations import catalog_cli, registry
from headwater.destinations.runtime import install
from headwater.destinations.runtime.definitions import read_catalog


@pytest.fixture(autouse=True)
def _forget_the_catalog() -> object:
    yield None
    registry.reset()  # `catalog` says which install this process uses


def headwater(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    try:
        main(list(argv))
    except SystemExit as exit_:
        assert exit_.code in (0, None), exit_.code
    return capsys.readouterr().out


def test_search_lists_both_kinds(capsys: pytest.CaptureFixture[str], actions_dir: Path) -> None:
    out = headwater(capsys, "catalog", "--dir", str(actions_dir), "WEBHOOK")
    rows = [line.split() for line in out.splitlines()[1:-1]]
    assert ["webhook", "Webhooks", "native"] in rows
    assert ["actions:webhook", "Webhook", "actions"] in rows
    assert all("webhook" in line.lower() for line in out.splitlines()[1:-1])
    assert out.splitlines()[-1].startswith(f"{len(rows)} destinations matching 'WEBHOOK' (")

    everything = headwater(capsys, "catalog", "--dir", str(actions_dir))
    entries = len(read_catalog(actions_dir)["destinations"])
    native = len(registry.native_definitions())
    assert f"({native} native, {entries} actions)" in everything.splitlines()[-1]


def test_without_an_install_it_lists_native_ones_and_says_how(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEADWATER_ACTIONS_DIR")  # the data directory's own install: none
    out = headwater(capsys, "catalog", "--data-dir", str(tmp_path), "slack")
    assert out.splitlines()[1].split() == ["slack", "Slack", "native"]
    assert "`headwater catalog install`" in out.splitlines()[-1]


def test_show_an_actions_destination(capsys: pytest.CaptureFixture[str], actions_dir: Path) -> None:
    out = headwater(capsys, "catalog", "--dir", str(actions_dir), "show", "actions:customerio")
    lines = out.splitlines()
    assert lines[0] == (
        "actions:customerio: Actions Customerio (actions, package directory customerio)"
    )
    assert "  siteId: string, required, secret" in lines
    assert '  accountRegion: string, one of US 🇺🇸, EU 🇪🇺, default "US 🇺🇸"' in lines
    assert any(line.startswith("  trackEvent: Track Event (default trigger: ") for line in lines)
    assert '    id: string, default {"@path": "$.userId"}' in lines
    assert "Presets:" in lines
    assert lines[-1] == "Hooks: onDelete, testAuthentication"


def test_show_a_native_one_and_an_unknown_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEADWATER_ACTIONS_DIR")  # the data directory's own install: none
    out = headwater(capsys, "catalog", "--data-dir", str(tmp_path), "show", "webhook")
    assert out.splitlines()[0] == "webhook: Webhooks (native)"
    assert any(
        line.startswith("  shared_secret: ") and "secret" in line for line in out.splitlines()
    )
    with pytest.raises(SystemExit, match="the Actions catalog is not installed"):
        main(["catalog", "--data-dir", str(tmp_path), "show", "actions:customerio"])


def test_a_tarball_of_another_lock_file_is_refused(tmp_path: Path) -> None:
    made = tmp_path / "made"
    made.mkdir()
    (made / install.STAMP).write_text(json.dumps({"lock": "another", "version": "1.0.0"}))
    (made / install.CATALOG).write_text("{}")
    tarball = tmp_path / "old.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for name in (install.STAMP, install.CATALOG):
            archive.add(made / name, arcname=name)
    target = tmp_path / "actions"
    with pytest.raises(SystemExit, match="from another lock file"):
        main(["catalog", "install", "--dir", str(target), "--from", str(tarball)])
    assert not install.installed(target)


@pytest.mark.live
def test_install_update_pack_and_install_offline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A real ``npm ci`` from the registry (about 15 s), then a tarball of it installed."""
    target = tmp_path / "actions"
    first = headwater(capsys, "catalog", "install", "--dir", str(target))
    assert "npm ci" in first and "loaded" in first
    assert install.installed(target)
    document = read_catalog(target)
    assert document["version"] == install.pinned_version() and document["failed"] == []
    stamp = json.loads((target / install.STAMP).read_text())
    assert stamp["lock"] == install.lock_digest()
    assert not install.install(target, progress=lambda _m: None)  # the stamp says done

    tarball = tmp_path / "actions.tgz"
    headwater(capsys, "catalog", "pack", "--dir", str(target), str(tarball))
    offline = tmp_path / "offline"
    out = headwater(capsys, "catalog", "install", "--dir", str(offline), "--from", str(tarball))
    assert f"loaded {len(document['destinations'])} Actions destinations" in out
    assert install.installed(offline)
    assert (offline / "node_modules" / install.PACKAGE_NAME / "package.json").is_file()


@pytest.mark.live
def test_update_moves_the_pin_and_goes_back_when_it_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """On a copy of the lock file: a version that installs and loads becomes the pin; one
    that does not leaves the pin and the install as they were."""
    package = tmp_path / "package"
    shutil.copytree(install.PACKAGE, package)
    target = tmp_path / "actions"
    version = install.pinned_version()
    assert catalog_cli.update(target, version, package=package) == 0
    assert f"{install.PACKAGE_NAME} {version} -> {version}" in capsys.readouterr().out
    assert install.installed(target, package)
    assert read_catalog(target)["version"] == version

    lock = (package / "package-lock.json").read_bytes()
    assert catalog_cli.update(target, "0.0.0-no-such-version", package=package) == 1
    assert "keeping" in capsys.readouterr().err
    assert (package / "package-lock.json").read_bytes() == lock
    assert install.installed(target, package)


def test_apply_and_export_use_the_data_dirs_install(
    capsys: pytest.CaptureFixture[str],
    actions_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.delenv("HEADWATER_ACTIONS_DIR", raising=False)
    monkeypatch.delenv("HEADWATER_DATABASE", raising=False)
    (data_dir / "actions").mkdir(parents=True)
    for name in (install.CATALOG, install.STAMP):  # the data directory's own install
        shutil.copyfile(actions_dir / name, data_dir / "actions" / name)
    config = tmp_path / "headwater.yaml"
    config.write_text(
        "workspace: acme\nsources:\n  - name: web\n    write_key: WK_web\n"
        "destinations:\n  - name: cio\n    type: actions:customerio\n    source: web\n"
        "    settings: {siteId: the-site, apiKey: the-key}\n"
    )
    out = headwater(capsys, "apply", str(config), "--data-dir", str(data_dir))
    assert "+ destination cio (type actions:customerio; source web" in out
    exported = headwater(capsys, "export", "--data-dir", str(data_dir))
    assert "type: actions:customerio" in exported and "the-key" not in exported

    elsewhere = tmp_path / "other"
    with pytest.raises(SystemExit, match="headwater catalog install"):
        main(["apply", str(config), "--data-dir", str(elsewhere)])
