"""The ``headwater`` command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from headwater.audit.trail import AuditEvent
    from headwater.store.workspace import WorkspaceStore
    from headwater.supervisor import RunDirectory

DEFAULT_DATA_DIR = Path("headwater-data")


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "catalog" and not any(e.startswith("-") for e in extra):
        args.words += extra  # `catalog pack --dir DIR FILE`: words after an option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    sys.exit(args.run(args) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headwater",
        description="Headwater: a self-hosted customer data platform that speaks Segment.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the server (an ingest, an api and a worker process, supervised)"
    )
    _state_options(serve)
    serve.add_argument("--config", type=Path, help="headwater.yaml to apply at start")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8088)")
    serve.add_argument(
        "--role",
        choices=["all", "single", "ingest", "worker", "api"],  # api: serve's own child only
        metavar="{all,single,ingest,worker}",
        default="all",
        help="all (default): start and watch an ingest, an api and a worker process; single: "
        "every role in this one process; ingest: Tracking and REST APIs only; worker: log "
        "consumers",
    )
    serve.add_argument(
        "--ingest-processes",
        type=int,
        default=None,
        metavar="N",
        help="ingest processes sharing the port, with --role all or ingest (default: 2 with "
        "--role all on SQLite and 2 or more CPUs, else 1)",
    )
    # A role process started by `serve` itself: no bootstrap, port shared (SO_REUSEPORT).
    serve.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)
    # An ingest process with an api process beside it, which it hands non-hot connections to.
    serve.add_argument("--api-process", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    apply = commands.add_parser("apply", help="make the workspace match a config file")
    apply.add_argument("file", type=Path)
    apply.add_argument("--dry-run", action="store_true", help="show the changes, change nothing")
    _state_options(apply)
    apply.set_defaults(run=_apply)

    export = commands.add_parser("export", help="print the workspace as a config file")
    _state_options(export)
    export.set_defaults(run=_export)

    tail = commands.add_parser("tail", help="follow a source's debugger (live events)")
    tail.add_argument("source", help="source name or id")
    tail.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    tail.add_argument("--no-follow", action="store_true", help="print recent events and exit")
    tail.set_defaults(run=_tail)

    delivery = commands.add_parser("delivery", help="a destination's Event Delivery")
    delivery.add_argument("destination", help="destination name or id")
    delivery.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    delivery.add_argument("--minutes", type=int, default=60, help="time range (default 60)")
    delivery.set_defaults(run=_delivery)

    violations = commands.add_parser("violations", help="a source's Protocols violations")
    violations.add_argument("source", help="source name or id")
    violations.add_argument(
        "--window", default="24h", choices=["1h", "24h", "7d"], help="time range (default 24h)"
    )
    violations.add_argument("--json", action="store_true", help="the API's JSON, with samples")
    violations.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    violations.set_defaults(run=_violations)

    mtu = commands.add_parser("mtu", help="a source's monthly tracked users")
    mtu.add_argument("source", help="source name or id")
    mtu.add_argument("--month", help="YYYY-MM (UTC; default this month)")
    mtu.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    mtu.set_defaults(run=_mtu)

    insights = commands.add_parser(
        "insights", help="a Unify space's Profiles Insights: errors, violations, merges, mappings"
    )
    insights.add_argument("space", help="space name or id")
    insights.add_argument(
        "--kind", choices=["errors", "violations", "merges", "mappings"], help="default: all"
    )
    insights.add_argument("--id-type", help="only records about this ID type (email, …)")
    insights.add_argument("--violation", help="only this violation, by Segment's name")
    insights.add_argument("--external-id", metavar="TYPE:VALUE", help="search an external id")
    insights.add_argument("--since", help="ISO 8601 time or a duration back (30m, 24h, 7d)")
    insights.add_argument("--json", action="store_true", help="the API's records as JSON")
    insights.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    insights.set_defaults(run=_insights)

    profiles = commands.add_parser("profiles", help="a Unify space's profiles: CSV upload")
    profile_actions = profiles.add_subparsers(dest="action", required=True, metavar="ACTION")
    upload = profile_actions.add_parser(
        "upload", help="upload a profiles CSV (one Identify call per row), show its progress"
    )
    upload.add_argument("space", help="space name or id")
    upload.add_argument("file", type=Path, help="the .csv file")
    upload.add_argument("--no-wait", action="store_true", help="return once it is accepted")
    upload.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    upload.set_defaults(run=_profiles_upload)
    template = profile_actions.add_parser(
        "template", help="print the CSV template: the space's identifier columns"
    )
    template.add_argument("space", help="space name or id")
    template.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    template.set_defaults(run=_profiles_template)

    subscriptions = commands.add_parser(
        "subscriptions", help="a Unify space's user subscriptions: CSV upload, states"
    )
    sub_actions = subscriptions.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub_upload = sub_actions.add_parser(
        "upload", help="upload a subscription CSV (one Identify call per row), show its progress"
    )
    sub_upload.add_argument("space", help="space name or id")
    sub_upload.add_argument("file", type=Path, help="the .csv file")
    sub_upload.add_argument(
        "--group", help="the group uploader of this subscription group: group columns only"
    )
    sub_upload.add_argument("--custom-trait", help="a trait set to true on the file's profiles")
    sub_upload.add_argument("--no-wait", action="store_true", help="return once it is accepted")
    sub_upload.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    sub_upload.set_defaults(run=_subscriptions_upload)
    sub_template = sub_actions.add_parser(
        "template", help="print the CSV template: identifier and subscription status columns"
    )
    sub_template.add_argument("space", help="space name or id")
    sub_template.add_argument("--group", help="the group uploader's template for this group")
    sub_template.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    sub_template.set_defaults(run=_subscriptions_template)
    sub_report = sub_actions.add_parser(
        "report", help="print an upload's error report (the rows not applied) as CSV"
    )
    sub_report.add_argument("space", help="space name or id")
    sub_report.add_argument("upload", help="the upload's id (upl_…)")
    sub_report.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    sub_report.set_defaults(run=_subscriptions_report)
    sub_get = sub_actions.add_parser(
        "get", help="the subscription state of contact vectors (TYPE:KEY, e.g. EMAIL:a@b.com)"
    )
    sub_get.add_argument("space", help="space name or id")
    sub_get.add_argument("vectors", nargs="+", metavar="TYPE:KEY", help="EMAIL, SMS or WHATSAPP")
    sub_get.add_argument("--json", action="store_true", help="the API's answer as JSON")
    sub_get.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    sub_get.set_defaults(run=_subscriptions_get)

    regulations = commands.add_parser(
        "regulations", help="user deletion and suppression (Segment's regulations)"
    )
    regulation_actions = regulations.add_subparsers(dest="action", required=True, metavar="ACTION")
    reg_list = regulation_actions.add_parser("list", help="regulations, newest first")
    reg_list.add_argument("--source", help="one source's regulations (name or id)")
    reg_list.add_argument("--status", help="only this status (FINISHED, RUNNING, …)")
    reg_list.add_argument("--type", action="append", default=[], help="only this type")
    reg_list.add_argument("--json", action="store_true", help="the API's answer as JSON")
    reg_show = regulation_actions.add_parser("show", help="a regulation and each store's status")
    reg_show.add_argument("id", help="the regulation's id (reg_…)")
    reg_create = regulation_actions.add_parser(
        "create", help="suppress or delete users: TYPE ID [ID…]"
    )
    reg_create.add_argument("type", help="SUPPRESS_ONLY, UNSUPPRESS, SUPPRESS_WITH_DELETE, …")
    reg_create.add_argument("ids", nargs="+", metavar="ID", help="user ids")
    reg_create.add_argument("--source", help="only this source (name or id)")
    reg_create.add_argument(
        "--subject-type", default="USER_ID", help="USER_ID (default), ANONYMOUS_ID, OBJECT_ID"
    )
    reg_suppressions = regulation_actions.add_parser(
        "suppressions", help="users suppressed now (SUPPRESS_ONLY)"
    )
    reg_suppressions.add_argument("--source", help="a source's instead of the workspace's")
    for sub in (reg_list, reg_show, reg_create, reg_suppressions):
        sub.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    regulations.set_defaults(run=_regulations)

    audit = commands.add_parser("audit", help="the audit trail: who changed what, newest first")
    audit.add_argument("--since", help="from this ISO-8601 time (the trail keeps 90 days)")
    audit.add_argument("--resource", help="only changes to this resource id")
    audit.add_argument("--actor", help="only changes by this user or token id")
    audit.add_argument("--type", help='only this event type ("Source Created", …)')
    audit.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    audit.add_argument("--changes", action="store_true", help="print each before and after")
    audit.add_argument("--json", action="store_true", help="the API's events as JSON")
    audit.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    audit.set_defaults(run=_audit)

    workspace = commands.add_parser(
        "workspace", help="delete the workspace (revocable for five days), or revoke that"
    )
    workspace_actions = workspace.add_subparsers(dest="action", required=True, metavar="ACTION")
    ws_delete = workspace_actions.add_parser(
        "delete", help="request the deletion: NAME is the workspace's name, to confirm"
    )
    ws_delete.add_argument("name", help="the workspace's name (headwater workspace status)")
    ws_revoke = workspace_actions.add_parser(
        "revoke-deletion", help="revoke the deletion, within five days of the request"
    )
    ws_status = workspace_actions.add_parser("status", help="the deletion's status, if any")
    ws_status.add_argument("--json", action="store_true", help="the API's answer as JSON")
    for sub in (ws_delete, ws_revoke, ws_status):
        sub.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    workspace.set_defaults(run=_workspace)

    functions = commands.add_parser(
        "functions", help="source, destination and insert functions: logs, tests, versions"
    )
    function_actions = functions.add_subparsers(dest="action", required=True, metavar="ACTION")
    fn_list = function_actions.add_parser("list", help="the workspace's functions")
    fn_list.add_argument("--json", action="store_true", help="the API's answer as JSON")
    fn_logs = function_actions.add_parser(
        "logs", help="a function's most recent errors and logs (100, 30 days)"
    )
    fn_logs.add_argument("name", help="function name or id")
    fn_logs.add_argument("--count", type=int, default=100, help="at most this many (1-100)")
    fn_logs.add_argument("--json", action="store_true", help="the API's answer as JSON")
    fn_usage = function_actions.add_parser(
        "usage", help="a function's invocations and execution time by month"
    )
    fn_usage.add_argument("name", help="function name or id")
    fn_usage.add_argument("--json", action="store_true", help="the API's answer as JSON")
    fn_test = function_actions.add_parser(
        "test", help="run LATEST on a sample event or request; exit 1 when it throws"
    )
    fn_test.add_argument("name", help="function name or id")
    fn_test.add_argument(
        "--event", metavar="FILE", help="a JSON event (an array runs onBatch; - reads stdin)"
    )
    fn_test.add_argument(
        "--request",
        metavar="FILE",
        help='a source function\'s request as JSON: {"method", "headers", "body"}',
    )
    fn_test.add_argument("--settings", metavar="FILE", help="the settings as a JSON object")
    fn_versions = function_actions.add_parser(
        "versions", help="a function's versions, LATEST and DEPLOYED"
    )
    fn_versions.add_argument("name", help="function name or id")
    fn_restore = function_actions.add_parser(
        "restore", help="save an old version's code as the new LATEST"
    )
    fn_restore.add_argument("name", help="function name or id")
    fn_restore.add_argument("version", type=int, help="the version to restore")
    fn_restore.add_argument("--deploy", action="store_true", help="deploy it too")
    fn_deploy = function_actions.add_parser(
        "deploy", help="make every instance run LATEST (or --version N)"
    )
    fn_deploy.add_argument("name", help="function name or id")
    fn_deploy.add_argument("--version", type=int, help="deploy this version instead of LATEST")
    for sub in (fn_list, fn_logs, fn_usage, fn_test, fn_versions, fn_restore, fn_deploy):
        sub.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    functions.set_defaults(run=_functions)

    users = commands.add_parser("users", help="team members and their roles")
    user_actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    users_add = user_actions.add_parser(
        "add", help="add a member; prints a generated password once (or --password-stdin)"
    )
    users_add.add_argument("email", help="the member's email address")
    users_add.add_argument(
        "--role",
        action="append",
        required=True,
        help="a role's id or name over the whole workspace (repeat for more); "
        "workspace-owner for an owner",
    )
    users_add.add_argument("--name", help="the member's name (default: the email's local part)")
    users_add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    users_list = user_actions.add_parser("list", help="every member and their roles")
    for sub in (users_add, users_list):
        _state_options(sub)
    users.set_defaults(run=_users)

    tokens = commands.add_parser("tokens", help="Public API tokens")
    token_actions = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    tokens_create = token_actions.add_parser(
        "create", help="create a token with roles; prints it once"
    )
    tokens_create.add_argument(
        "--role", action="append", required=True, help="a role's id or name (repeat for more)"
    )
    tokens_create.add_argument("--description", required=True, help="what the token is for")
    tokens_create.add_argument(
        "--pii-access", action="store_true", help="see Red and Yellow values unmasked"
    )
    _state_options(tokens_create)
    tokens.set_defaults(run=_tokens)

    replay = commands.add_parser("replay", help="deliver archived events to a destination again")
    replay.add_argument("destination", help="destination name or id")
    replay.add_argument("--start", required=True, help="ISO 8601 time, inclusive")
    replay.add_argument("--end", required=True, help="ISO 8601 time, exclusive")
    replay.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    replay.set_defaults(run=_replay)

    tester = commands.add_parser(
        "test-event", help="send one event straight to a destination (the Event Tester)"
    )
    tester.add_argument("destination", help="destination name or id")
    tester.add_argument("file", help='a JSON file holding one Segment message ("-": stdin)')
    tester.add_argument("--mapping", help="an Actions mapping's id: send through it alone")
    tester.add_argument("--url", default="http://127.0.0.1:8088", help="the server's address")
    tester.set_defaults(run=_test_event)

    destination = commands.add_parser("destination", help="change a destination instance")
    destination_actions = destination.add_subparsers(dest="action", required=True, metavar="ACTION")
    subscriptions = destination_actions.add_parser(
        "import-subscriptions",
        help="add Segment's exported subscriptions to a destination as mappings",
        description="FILE: what Segment's Public API answers to GET "
        "/destinations/{destinationId}/subscriptions, its `subscriptions` list, or one "
        "subscription (- reads standard input). Each becomes a mapping (actionSlug is the "
        "action, settings its fields), enabled as it was in Segment; all or none are added.",
    )
    subscriptions.add_argument("name", help="destination name or id")
    subscriptions.add_argument("file", help="the JSON file")
    subscriptions.add_argument(
        "--replace", action="store_true", help="replace the destination's mappings, not add"
    )
    _state_options(subscriptions)
    subscriptions.set_defaults(run=_import_subscriptions)

    catalog = commands.add_parser(
        "catalog",
        help="list the destinations; show one; install or update Segment's Actions package",
        description="headwater catalog [SEARCH]: the destinations whose type, name or "
        "description has every word of SEARCH (all without one). "
        "headwater catalog show TYPE: one's settings, actions and presets. "
        "headwater catalog install [--from TARBALL]: install the pinned "
        "@segment/action-destinations (idempotent). headwater catalog update [VERSION]: pin "
        "VERSION (default: the newest) in the lock file, install it and load every "
        "definition, or go back to the old pin if any fails. "
        "headwater catalog pack FILE.tgz: an installed package as a tarball for an offline "
        "`install --from`. "
        "headwater catalog oauth NAME: run the OAuth authorization-code flow on loopback for "
        "destination NAME with your own OAuth app and store its first access and refresh "
        "token in the destination's oauth setting.",
    )
    catalog.add_argument(
        "words",
        nargs="*",
        metavar="SEARCH | show TYPE | install | update [VERSION] | pack FILE | oauth NAME",
    )
    catalog.add_argument(
        "--dir",
        type=Path,
        help="the Actions package's directory (default: DATA_DIR/actions, "
        "or HEADWATER_ACTIONS_DIR when set)",
    )
    catalog.add_argument(
        "--from", dest="tarball", type=Path, help="install: from a tarball `catalog pack` made"
    )
    catalog.add_argument(
        "--data-dir", type=Path, help=f"data directory (default ./{DEFAULT_DATA_DIR})"
    )
    oauth = catalog.add_argument_group("oauth NAME")
    oauth.add_argument("--database", help="oauth: postgresql://… state database (default: SQLite)")
    oauth.add_argument("--client-id", help="oauth: your OAuth app's client id (default: stored)")
    oauth.add_argument("--client-secret", help="oauth: its client secret (default: stored)")
    oauth.add_argument("--authorize-url", help="oauth: the provider's authorization endpoint")
    oauth.add_argument("--token-url", help="oauth: the provider's token endpoint")
    oauth.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        metavar="S",
        help="oauth: a scope to ask for, instead of the known ones (repeat, or space-separated)",
    )
    oauth.add_argument(
        "--pkce",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="oauth: send a PKCE S256 challenge (default: where the provider documents it)",
    )
    oauth.add_argument(
        "--port", type=int, default=0, help="oauth: loopback port of the redirect (default: free)"
    )
    oauth.add_argument("--no-browser", action="store_true", help="oauth: only print the URL")
    oauth.add_argument(
        "--timeout", type=float, default=300.0, help="oauth: seconds to wait (default 300)"
    )
    catalog.set_defaults(run=_catalog)

    typewriter = commands.add_parser(
        "typewriter",
        help="write a typed analytics client (Python or TypeScript) for a tracking plan",
        description="Reads the plan's rules from a running server (GET /api/v1/tracking-plans/"
        "PLAN/rules; token from HEADWATER_ADMIN_TOKEN) or, with --rules, from a JSON file "
        "holding that Public API RuleV1 list (or the plan.json a previous run wrote).",
    )
    typewriter.add_argument("plan", help="tracking plan name or id")
    typewriter.add_argument("--language", choices=["python", "typescript"], required=True)
    typewriter.add_argument("--out", type=Path, required=True, help="directory to write into")
    typewriter.add_argument("--rules", help="JSON file of rules instead of the server (- stdin)")
    typewriter.add_argument(
        "--url", "--api", default="http://127.0.0.1:8088", help="the server's address"
    )
    typewriter.set_defaults(run=_typewriter)

    warehouse = commands.add_parser("warehouse", help="sync or query a warehouse")
    actions = warehouse.add_subparsers(dest="action", required=True, metavar="ACTION")
    sync = actions.add_parser(
        "sync", help="sync now, wait, print the result (exit 1 on failure, 2 on partial)"
    )
    sync.add_argument("name", nargs="?", help="warehouse name or id")
    sync.add_argument("--all", action="store_true", help="every warehouse")
    sync.add_argument(
        "--url",
        default="http://127.0.0.1:8088",
        help="the running server; without one the sync runs here",
    )
    sync.add_argument("--config", type=Path, help="headwater.yaml (for its server settings)")
    _state_options(sync)
    sync.set_defaults(run=_warehouse_sync)
    query = actions.add_parser("query", help="run SQL on a warehouse, print tab-separated rows")
    query.add_argument("name", help="warehouse name or id")
    query.add_argument("sql")
    query.add_argument("--config", type=Path, help="headwater.yaml (for its server settings)")
    _state_options(query)
    query.set_defaults(run=_warehouse_query)
    return parser


def _state_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help=f"data directory (default ./{DEFAULT_DATA_DIR})"
    )
    parser.add_argument("--database", help="postgresql://… state database (default: SQLite)")


def _settings(args: argparse.Namespace, config: Any = None) -> Any:
    from headwater.config.apply import server_settings_overrides
    from headwater.config.settings import ServerSettings

    settings = ServerSettings(data_dir=DEFAULT_DATA_DIR)
    if config is not None:
        settings = replace(settings, **server_settings_overrides(config))
    given = {
        "data_dir": args.data_dir,
        "database": args.database or os.environ.get("HEADWATER_DATABASE"),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
    }
    settings = replace(settings, **{k: v for k, v in given.items() if v is not None})
    from headwater.destinations import registry

    registry.use_data_dir(settings.data_dir)  # which Actions catalog this command sees
    return settings


def _load(path: Path | None) -> Any:
    if path is None:
        return None
    from headwater.config.model import load_config
    from headwater.errors import ConfigError

    try:
        return load_config(path)
    except (ConfigError, OSError) as exc:
        raise SystemExit(f"headwater: cannot use {path}: {exc}") from exc


def _serve(args: argparse.Namespace) -> int:
    from headwater.config.bootstrap import bootstrap
    from headwater.errors import InputError

    config = _load(args.config)
    settings = _settings(args, config)
    supervise = _supervising(args, settings)
    if args.supervised:
        return _serve_role(args, settings)
    run = None
    if supervise:
        # Before the config is applied: a refused start changes nothing.
        from headwater.supervisor import RunDirectory, check_port

        try:
            settings = replace(settings, port=check_port(settings.host, settings.port))
        except OSError as exc:
            raise SystemExit(
                f"headwater serve: cannot listen on {settings.host}:{settings.port}: "
                f"{exc.strerror or exc}"
            ) from None
        run = RunDirectory.claim(settings.data_dir)
    try:
        prepared = bootstrap(settings, config)
    except InputError as exc:
        raise SystemExit(f"headwater serve: cannot apply {args.config}: {exc}") from exc
    except RuntimeError as exc:  # what the first start needs and lacks (an owner's email)
        raise SystemExit(f"headwater serve: {exc}") from None
    for note in prepared.notes:
        print(note, flush=True)
    if args.role in ("all", "single", "worker"):
        _install_actions(settings)
        _install_function_libraries(settings)
    if run is not None:
        return _supervise(args, settings, run)

    import uvicorn

    from headwater import collector
    from headwater.server import Server

    settings = replace(
        settings,
        run_ingest=args.role in ("single", "ingest"),
        run_consumers=args.role in ("single", "worker"),
    )
    server = Server(settings, prepared.admin_token_hash)
    max_connections = _listening(settings, f"role: {args.role}")
    collector.settle()
    uvicorn.run(
        server,
        host=settings.host,
        port=settings.port,
        **_uvicorn_options(
            settings, max_connections, server.tracking if settings.run_ingest else None
        ),
    )
    return 0


def _install_actions(settings: Any) -> None:
    """Segment's Actions destinations on first start (``headwater catalog install`` does it
    ahead of time); without them the native destinations still work, so a failure only warns."""
    from headwater.destinations.runtime.install import actions_dir, install
    from headwater.errors import HeadwaterError

    try:
        install(actions_dir(settings.data_dir), progress=lambda line: print(line, flush=True))
    except (HeadwaterError, OSError) as exc:
        print(
            f"headwater serve: Segment's Actions destinations are not available: {exc}. "
            "Native destinations work; run `headwater catalog install` to add them.",
            flush=True,
        )


def _install_function_libraries(settings: Any) -> None:
    """The functions' JavaScript libraries (lodash, moment…) on first start; without them
    functions still run, only those globals are missing, so a failure only warns."""
    from headwater.errors import HeadwaterError
    from headwater.functions.sandbox.libraries import install, libraries_dir

    try:
        install(libraries_dir(settings.data_dir), progress=lambda line: print(line, flush=True))
    except (HeadwaterError, OSError) as exc:
        print(
            f"headwater serve: the functions' JavaScript libraries are not available: {exc}. "
            "Functions run without them (no _, moment, jsonwebtoken… globals).",
            flush=True,
        )


def _supervising(args: argparse.Namespace, settings: Any) -> bool:
    """Whether this ``serve`` starts role processes rather than running roles itself."""
    if args.ingest_processes is None:
        args.ingest_processes = _default_ingest_processes(args, settings)
    processes: int = args.ingest_processes
    if processes < 1:
        raise SystemExit("headwater serve: --ingest-processes must be 1 or more")
    if processes > 1 and args.role not in ("all", "ingest"):
        raise SystemExit("headwater serve: --ingest-processes goes with --role all or ingest")
    if args.role == "api" and not args.supervised:
        raise SystemExit(
            "headwater serve: --role api is started by `serve` itself, beside its ingest "
            "processes; run `serve` (--role all)"
        )
    return not args.supervised and (args.role == "all" or processes > 1)


def _default_ingest_processes(args: argparse.Namespace, settings: Any) -> int:
    """Two on one machine with SQLite: the ingest process is the busiest (decoding and
    normalising every message on one core) and the worker has the other core mostly to
    itself; a second ingest process puts the two cores to work (docs/decisions.md). With
    PostgreSQL the database shares the machine, so the operator chooses."""
    if args.role != "all" or args.supervised or (settings.database or "").startswith("postgres"):
        return 1
    return min(2, os.cpu_count() or 1)


def _supervise(args: argparse.Namespace, settings: Any, run: RunDirectory) -> int:
    from headwater import supervisor

    processes: int = args.ingest_processes
    names = ["ingest" if n == 1 else f"ingest-{n}" for n in range(1, processes + 1)]
    roles = [("ingest", name) for name in names]
    if args.role == "all":
        roles += [("api", "api"), ("worker", "worker")]
    api = ("api", "api") in roles
    counts = Counter(role for role, _ in roles)
    _listening(  # each serving process allows as many, from the same limits
        settings,
        "processes: " + " + ".join(f"{count} {role}" for role, count in counts.items()),
        " per process",
    )
    given = [
        (option, value)
        for option, value in (
            ("--config", args.config),
            ("--data-dir", args.data_dir),
            ("--database", args.database),
            ("--host", args.host),
        )
        if value is not None
    ]
    children = [
        supervisor.Child(
            name,
            [
                sys.executable,
                "-m",
                "headwater",
                "serve",
                "--supervised",
                "--role",
                role,
                "--port",
                str(settings.port),
                *(["--api-process"] if api and role == "ingest" else []),
                *(part for option, value in given for part in (option, str(value))),
            ],
        )
        for role, name in roles
    ]
    try:
        return supervisor.Supervisor(run, children).run_until_stopped()
    finally:
        run.release()


def _serve_role(args: argparse.Namespace, settings: Any) -> int:
    """One role process of a supervised ``serve``: the supervisor bootstrapped already."""
    import signal

    import uvicorn

    from headwater import collector, handoff, supervisor
    from headwater.config.bootstrap import admin_token_hash
    from headwater.server import Server

    if args.role not in ("ingest", "worker", "api"):
        raise SystemExit("headwater serve: --supervised runs --role ingest, api or worker")
    worker = args.role == "worker"
    # The api process takes the Tracking API's other routes (pixel, settings document,
    # OPTIONS), so it appends to the ingest log too; the worker alone runs the consumers.
    settings = replace(settings, run_ingest=not worker, run_consumers=worker)
    server = Server(settings, admin_token_hash(settings))
    run_dir = settings.data_dir / supervisor.RUN_DIR
    archive_health = run_dir / supervisor.ARCHIVE_HEALTH_FILE
    collector.settle()
    if worker:
        return supervisor.run_headless(
            server,
            lambda: supervisor.publish_archive_health(
                archive_health, server.archive_consumer.failing
            ),
        )
    max_connections = _connection_limits(settings)[0]
    app = supervisor.ArchiveHealthRelay(server, archive_health)
    http: uvicorn.Server
    sockets: list[Any] | None = None
    if args.role == "api":  # no port: its connections come from the ingest processes
        os.nice(handoff.NICENESS)
        config = uvicorn.Config(app, **_uvicorn_options(settings, max_connections))
        http = handoff.ApiServer(config, run_dir / handoff.SOCKET_NAME)
    else:
        relay = handoff.Sender(run_dir / handoff.SOCKET_NAME) if args.api_process else None
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            **_uvicorn_options(settings, max_connections, server.tracking, relay),
        )
        http = uvicorn.Server(config)
        sockets = [supervisor.reuseport_socket(settings.host, settings.port)]
    # uvicorn raises the stop signal again once it has shut down: exit quietly with 0 instead
    # (the supervisor asked for the stop) rather than with a traceback or a signal's code.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    with contextlib.suppress(KeyboardInterrupt):
        http.run(sockets=sockets)
    return 0 if http.started else 3


def _connection_limits(settings: Any) -> tuple[int, int]:
    """(connections this process allows, its open-file limit), after raising the limit."""
    from headwater.connections import default_max_connections, raise_open_file_limit

    open_files = raise_open_file_limit()
    return settings.max_connections or default_max_connections(open_files), open_files


def _listening(settings: Any, layout: str, per: str = "") -> int:
    """Print the one "listening" line; return the connection cap it names."""
    max_connections, open_files = _connection_limits(settings)
    where = settings.database.split("@")[-1] if settings.database else settings.data_dir
    print(
        f"Headwater listening on http://{settings.host}:{settings.port} "
        f"(state: {where}, {layout}, durability: {settings.durability}, "
        f"connections: up to {max_connections} of {open_files} open files{per})",
        flush=True,
    )
    if max_connections > open_files - 256:
        print(
            f"Warning: server.max_connections ({max_connections}) leaves under 256 of the "
            f"{open_files} open files for the database, archive and destinations.",
            flush=True,
        )
    return max_connections


def _uvicorn_options(
    settings: Any, max_connections: int, tracking: Any = None, relay: Any = None
) -> dict[str, Any]:
    """uvicorn's options; where this process serves the Tracking API's hot routes
    (``tracking``), they get their own protocol, which hands every other request to the api
    process (``relay``) or, without one, to uvicorn's protocol here."""
    from headwater.connections import guarded_protocol
    from headwater.hot_routes import hot_protocol
    from headwater.ingest.app import HOT_ROUTES

    protocol: Any = guarded_protocol(
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        max_connections=max_connections,
    )
    if tracking is not None:
        protocol = hot_protocol(
            tracking.post,
            {path.encode(): limit for path, limit in HOT_ROUTES.items()},
            fallback=protocol,
            relay=relay,
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_connections=max_connections,
        )
    return {
        "loop": "uvloop",
        "http": protocol,
        "lifespan": "on",
        "access_log": False,
        "log_level": "warning",
        "proxy_headers": True,
        "timeout_graceful_shutdown": 10,
    }


def _open_store(args: argparse.Namespace) -> Any:
    from headwater.store.database import database_url, open_engine
    from headwater.store.migrations import migrate
    from headwater.store.workspace import WorkspaceStore

    settings = _settings(args)
    engine = open_engine(database_url(settings.data_dir, settings.database))
    migrate(engine)
    return WorkspaceStore(engine)


def _apply(args: argparse.Namespace) -> int:
    from headwater.audit.trail import Actor
    from headwater.config.apply import apply, plan
    from headwater.config.audit_view import recorded
    from headwater.errors import InputError

    config = _load(args.file)
    store = _open_store(args)
    try:
        changes = plan(store, config)
        print(changes.render())
        if not args.dry_run:
            with recorded(store, Actor("cli", "headwater apply")):
                notes = apply(store, changes)
            for note in notes:
                print(note)
        elif changes.changes:
            print("(dry run: nothing was changed)")
    except InputError as exc:
        raise SystemExit(f"headwater apply: {exc}\nFix {args.file} and run apply again.") from exc
    return 0


def _export(args: argparse.Namespace) -> int:
    from headwater.config.apply import export_config
    from headwater.errors import ExportError

    try:
        sys.stdout.write(export_config(_open_store(args)))
    except ExportError as exc:
        raise SystemExit(f"headwater export: {exc}") from exc
    return 0


def _import_subscriptions(args: argparse.Namespace) -> int:
    import json

    from headwater.destinations.presets import import_subscriptions, more_pages
    from headwater.destinations.store import DestinationStore
    from headwater.errors import InputError

    command = "headwater destination import-subscriptions"
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        document = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SystemExit(f"{command}: cannot read {args.file}: {exc}") from None
    destinations = DestinationStore(_open_store(args))
    try:
        destination = destinations.require(args.name)
        mappings = import_subscriptions(destination.definition, document)
        destinations.edit_mappings(
            destination.id,
            lambda current: mappings if args.replace else [*current, *mappings],
        )
    except InputError as exc:
        raise SystemExit(f"{command}: {exc.message}") from None
    verb = "replaced the mappings of" if args.replace else "added to"
    print(f"{len(mappings)} mappings {verb} {destination.name}:")
    for mapping in mappings:
        state = "enabled" if mapping["enabled"] else "disabled"
        trigger = " ".join(str(mapping["trigger"]).split())
        print(f"  + {mapping['name']} ({mapping['action']}, {state}) when {trigger}")
    following = more_pages(document)
    if following:
        print(
            f"{args.file} is one page of several (next: {following}): fetch and import the "
            "others too",
            file=sys.stderr,
        )
    return 0


def _admin_token(command: str) -> str:
    token = os.environ.get("HEADWATER_ADMIN_TOKEN")
    if not token:
        raise SystemExit(
            f"headwater {command}: set HEADWATER_ADMIN_TOKEN to the server's admin token."
        )
    return token


def _tail(args: argparse.Namespace) -> int:
    from headwater.observe.tail import tail

    token = _admin_token("tail")
    with contextlib.suppress(KeyboardInterrupt):
        tail(args.url, token, args.source, follow=not args.no_follow)
    return 0


def _delivery(args: argparse.Namespace) -> int:
    from headwater.observe.delivery_cli import show_delivery

    show_delivery(args.url, _admin_token("delivery"), args.destination, args.minutes)
    return 0


def _violations(args: argparse.Namespace) -> int:
    from headwater.protocols.violations_cli import show_violations

    token = _admin_token("violations")
    show_violations(args.url, token, args.source, args.window, args.json)
    return 0


def _mtu(args: argparse.Namespace) -> int:
    from headwater.protocols.violations_cli import show_mtu

    show_mtu(args.url, _admin_token("mtu"), args.source, args.month)
    return 0


def _insights(args: argparse.Namespace) -> int:
    from headwater.unify.commands import show_insights, since_time

    token = _admin_token("insights")
    params = {
        name: value
        for name, value in (
            ("kind", args.kind),
            ("idType", args.id_type),
            ("violation", args.violation),
            ("externalId", args.external_id),
            ("start", since_time(args.since) if args.since else None),
        )
        if value
    }
    show_insights(args.url, token, args.space, params, args.json)
    return 0


def _profiles_upload(args: argparse.Namespace) -> int:
    """Exits 1 when the upload failed, so scripts can check."""
    from headwater.unify.commands import upload_profiles

    token = _admin_token("profiles upload")
    done = upload_profiles(args.url, token, args.space, args.file, wait=not args.no_wait)
    return 1 if done["status"] == "failed" else 0


def _subscriptions_upload(args: argparse.Namespace) -> int:
    """Exits 1 when the upload failed, so scripts can check."""
    from urllib.parse import quote

    from headwater.unify.commands import upload_profiles

    tail = "subscriptions/uploads"
    if args.group:
        tail = f"subscription-groups/{quote(args.group, safe='')}/uploads"
    params = {"customTrait": args.custom_trait} if args.custom_trait else {}
    token = _admin_token("subscriptions upload")
    done = upload_profiles(
        args.url,
        token,
        args.space,
        args.file,
        wait=not args.no_wait,
        tail=tail,
        params=params,
        command="subscriptions upload",
    )
    return 1 if done["status"] == "failed" else 0


def _subscriptions_template(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from headwater.unify.commands import show_template

    tail = "subscriptions/uploads/template"
    if args.group:
        tail = f"subscription-groups/{quote(args.group, safe='')}/uploads/template"
    token = _admin_token("subscriptions template")
    show_template(args.url, token, args.space, tail=tail, command="subscriptions template")
    return 0


def _subscriptions_report(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from headwater.unify.commands import show_template

    tail = f"subscriptions/uploads/{quote(args.upload, safe='')}/report"
    token = _admin_token("subscriptions report")
    show_template(args.url, token, args.space, tail=tail, command="subscriptions report")
    return 0


def _subscriptions_get(args: argparse.Namespace) -> int:
    from headwater.unify.commands import show_states

    vectors = []
    for text in args.vectors:
        kind, colon, key = text.partition(":")
        if not colon or not kind or not key:
            raise SystemExit(
                f"headwater subscriptions get: {text!r}: give TYPE:KEY, for example "
                "EMAIL:jane@example.com or SMS:+15555550123"
            )
        vectors.append((kind, key))
    show_states(args.url, _admin_token("subscriptions get"), args.space, vectors, args.json)
    return 0


def _profiles_template(args: argparse.Namespace) -> int:
    from headwater.unify.commands import show_template

    show_template(args.url, _admin_token("profiles template"), args.space)
    return 0


def _audited(store: WorkspaceStore, command: str, event: AuditEvent) -> None:
    """A change a command made in the database itself, in the audit trail."""
    from headwater.audit.trail import Actor, AuditTrail

    AuditTrail(store.engine).record(Actor("cli", command), [event])


def _users(args: argparse.Namespace) -> int:
    from headwater.audit.trail import AuditEvent
    from headwater.errors import InputError
    from headwater.iam import cli as iam_cli

    store = _open_store(args)
    try:
        if args.action == "add":
            password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
            user = iam_cli.add_user(store, args.email, args.role, name=args.name, password=password)
            _audited(
                store,
                "headwater users add",
                AuditEvent("User Created", "user", user.id, user.email),
            )
        else:
            iam_cli.list_users(store)
    except InputError as exc:
        field = f"{exc.field}: " if exc.field else ""
        raise SystemExit(f"headwater users {args.action}: {field}{exc}") from None
    return 0


def _tokens(args: argparse.Namespace) -> int:
    from headwater.audit.trail import AuditEvent
    from headwater.errors import InputError
    from headwater.iam import cli as iam_cli

    store = _open_store(args)
    try:
        token = iam_cli.create_token(store, args.role, args.description, pii_access=args.pii_access)
        created = AuditEvent("Token Created", "token", token.id, token.description)
        _audited(store, "headwater tokens create", created)
    except InputError as exc:
        field = f"{exc.field}: " if exc.field else ""
        raise SystemExit(f"headwater tokens create: {field}{exc}") from None
    return 0


def _regulations(args: argparse.Namespace) -> int:
    from headwater.privacy import regulations_cli

    token = _admin_token("regulations")
    if args.action == "list":
        regulations_cli.list_regulations(
            args.url,
            token,
            source=args.source,
            status=args.status,
            types=args.type,
            as_json=args.json,
        )
    elif args.action == "show":
        regulations_cli.show_regulation(args.url, token, args.id)
    elif args.action == "create":
        regulations_cli.create_regulation(
            args.url,
            token,
            args.type,
            args.ids,
            subject_type=args.subject_type,
            source=args.source,
        )
    else:
        regulations_cli.list_suppressions(args.url, token, source=args.source)
    return 0


def _audit(args: argparse.Namespace) -> int:
    from headwater.audit.cli import show_trail

    show_trail(
        args.url,
        _admin_token("audit"),
        since=args.since,
        resource=args.resource,
        actor=args.actor,
        type_=args.type,
        limit=max(1, args.limit),
        as_json=args.json,
        changes=args.changes,
    )
    return 0


def _workspace(args: argparse.Namespace) -> int:
    from headwater.privacy import workspace_cli

    token = _admin_token("workspace")
    if args.action == "delete":
        workspace_cli.delete(args.url, token, args.name)
    elif args.action == "revoke-deletion":
        workspace_cli.revoke(args.url, token)
    else:
        workspace_cli.status(args.url, token, as_json=args.json)
    return 0


def _functions(args: argparse.Namespace) -> int:
    """``test`` exits 1 when the function threw, so scripts can check."""
    from headwater.functions import cli as functions_cli

    token = _admin_token("functions")
    if args.action == "list":
        functions_cli.list_functions(args.url, token, as_json=args.json)
    elif args.action == "logs":
        functions_cli.show_logs(args.url, token, args.name, count=args.count, as_json=args.json)
    elif args.action == "usage":
        functions_cli.show_usage(args.url, token, args.name, as_json=args.json)
    elif args.action == "test":
        ok = functions_cli.test_function(
            args.url,
            token,
            args.name,
            event_file=args.event,
            request_file=args.request,
            settings_file=args.settings,
        )
        return 0 if ok else 1
    elif args.action == "versions":
        functions_cli.list_versions(args.url, token, args.name)
    elif args.action == "restore":
        functions_cli.restore(args.url, token, args.name, args.version, deploy=args.deploy)
    else:
        functions_cli.deploy(args.url, token, args.name, args.version)
    return 0


def _replay(args: argparse.Namespace) -> int:
    from headwater.observe.delivery_cli import start_replay

    start_replay(args.url, _admin_token("replay"), args.destination, args.start, args.end)
    return 0


def _test_event(args: argparse.Namespace) -> int:
    """Exits 1 when the destination did not take the event, so scripts can check."""
    from headwater.observe.delivery_cli import send_event_to_tester

    token = _admin_token("test-event")
    sent = send_event_to_tester(args.url, token, args.destination, args.file, args.mapping)
    return 0 if sent else 1


def _typewriter(args: argparse.Namespace) -> int:
    from headwater.protocols.typewriter.command import (
        rules_from_file,
        rules_from_server,
        write_client,
    )

    if args.rules:
        rules = rules_from_file(args.rules)
    else:
        rules = rules_from_server(args.url, _admin_token("typewriter"), args.plan)
    write_client(args.plan, rules, args.language, args.out)
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from headwater.destinations.catalog_cli import run

    if args.words[:1] == ["oauth"]:
        return _catalog_oauth(args)
    return run(args.words, args.dir, args.data_dir or DEFAULT_DATA_DIR, args.tarball)


def _catalog_oauth(args: argparse.Namespace) -> int:
    from headwater.destinations import registry
    from headwater.destinations.oauth.command import Options, authorize
    from headwater.destinations.store import DestinationStore
    from headwater.errors import HeadwaterError, NotFoundError
    from headwater.store.database import database_url, open_engine
    from headwater.store.migrations import migrate
    from headwater.store.workspace import WorkspaceStore

    if len(args.words) != 2:
        raise SystemExit("headwater catalog oauth: name one destination")
    data_dir = args.data_dir or DEFAULT_DATA_DIR
    if args.dir is not None:
        registry.use_actions_dir(args.dir)
    else:
        registry.use_data_dir(data_dir)
    database = args.database or os.environ.get("HEADWATER_DATABASE")
    engine = open_engine(database_url(data_dir, database))
    migrate(engine)
    options = Options(
        destination=args.words[1],
        client_id=args.client_id,
        client_secret=args.client_secret,
        authorize_url=args.authorize_url,
        token_url=args.token_url,
        scopes=None if args.scopes is None else tuple(" ".join(args.scopes).split()),
        pkce=args.pkce,
        port=args.port,
        browser=not args.no_browser,
        timeout=args.timeout,
    )
    try:
        authorize(DestinationStore(WorkspaceStore(engine)), options, lambda s: print(s, flush=True))
    except NotFoundError as exc:
        raise SystemExit(
            f"headwater catalog oauth: {exc.message}; `headwater export` lists the destinations"
        ) from None
    except HeadwaterError as exc:
        raise SystemExit(f"headwater catalog oauth: {exc}") from None
    finally:
        engine.dispose()
    return 0


def _warehouses(args: argparse.Namespace) -> tuple[Any, Any]:
    from headwater.store.database import database_url, open_engine
    from headwater.store.migrations import migrate
    from headwater.store.workspace import WorkspaceStore
    from headwater.warehouse.store import WarehouseStore

    settings = _settings(args, _load(args.config))
    engine = open_engine(database_url(settings.data_dir, settings.database))
    migrate(engine)
    return WarehouseStore(WorkspaceStore(engine)), settings


def _chosen(store: Any, args: argparse.Namespace, command: str) -> list[Any]:
    from headwater.errors import NotFoundError

    if args.all == bool(args.name):
        raise SystemExit(f"headwater warehouse {command}: name one warehouse, or give --all")
    try:
        return list(store.list()) if args.all else [store.require(args.name)]
    except NotFoundError as exc:
        raise SystemExit(
            f"headwater warehouse {command}: {exc.message}; `headwater export` lists the warehouses"
        ) from None


def _warehouse_sync(args: argparse.Namespace) -> int:
    from headwater.warehouse.commands import server_answers, sync_directly, sync_through_server

    if server_answers(args.url):
        if args.all == bool(args.name):
            raise SystemExit("headwater warehouse sync: name one warehouse, or give --all")
        token = _admin_token("warehouse sync")
        if args.all:
            store, _ = _warehouses(args)
            names = [w.name for w in store.list()]
        else:
            names = [args.name]
        return sync_through_server(args.url, token, names)
    store, settings = _warehouses(args)
    return sync_directly(
        store, settings.archive_dir, settings.data_dir, _chosen(store, args, "sync")
    )


def _warehouse_query(args: argparse.Namespace) -> int:
    from headwater.errors import WarehouseError
    from headwater.warehouse.commands import query

    store, settings = _warehouses(args)
    args.all = False
    [warehouse] = _chosen(store, args, "query")
    try:
        return query(warehouse, settings.data_dir, args.sql)
    except WarehouseError as exc:
        raise SystemExit(f"headwater warehouse query: {exc}") from None
