"""One Headwater process: the roles it runs, wired together, as one ASGI application.

``headwater serve`` runs every role here (Tracking API, REST API, log consumers) on one state
database. Each role is a separate object; this module only builds them and routes requests:
``/v1/spaces/*`` and ``/v1/namespaces/*`` to the Profile API, the rest of ``/v1/*`` to the
Tracking API, ``/health``, ``/ready`` and ``/metrics`` here, the rest to the
REST API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.exc import OperationalError

from headwater.api.app import create_api
from headwater.api.audit import use_audit
from headwater.api.debugger import router as debugger_router
from headwater.api.engage import use_batch_runs
from headwater.api.functions import close_runtime, use_functions
from headwater.api.privacy import use_masker
from headwater.api.source_schema import router as source_schema_router
from headwater.api.source_schema import use_plans
from headwater.api.sql_traits import use_warehouse_queries
from headwater.api.tester import router as tester_router
from headwater.api.tester import use_delivery
from headwater.api.uploads import use_appender
from headwater.api.violations import router as violations_router
from headwater.audit.forwarding import AuditForwarding
from headwater.audit.trail import AuditTrail
from headwater.clock import wall_clock
from headwater.config.audit_view import workspace_view
from headwater.config.settings import ServerSettings
from headwater.delivery.deletion import DestinationEraser
from headwater.delivery.engine import DeliveryEngine
from headwater.delivery.functions import FunctionCatalog
from headwater.destinations import registry
from headwater.destinations.redirects import Redirects
from headwater.destinations.routing import schema_integration_filter
from headwater.destinations.runtime.install import actions_dir
from headwater.destinations.store import DestinationCache, DestinationStore
from headwater.engage.batch_runs import BatchRuns
from headwater.engage.computations import Planned
from headwater.engage.erasure import profiles_eraser
from headwater.engage.journeys.runner import JourneyFollower
from headwater.engage.journeys.store import Live as LiveJourneys
from headwater.engage.lists import ListAudiences
from headwater.engage.outbox import Drain
from headwater.engage.sql_traits.runs import SqlTraitRuns
from headwater.engage.stage import EngageStage
from headwater.functions.erasure import FunctionLogEraser
from headwater.functions.logs import FunctionLogs
from headwater.functions.objects import FunctionObjects
from headwater.functions.requests import FunctionRequests
from headwater.functions.requests_erasure import FunctionObjectEraser, FunctionRequestEraser
from headwater.functions.sandbox.libraries import installed as libraries_installed
from headwater.functions.sandbox.libraries import libraries_dir
from headwater.functions.sandbox.runtime import SandboxRuntime
from headwater.functions.store import FunctionStore
from headwater.functions.usage import FunctionUsage
from headwater.ingest.app import TrackingAPI
from headwater.ingest.committer import GroupCommitter
from headwater.ingest.internal import InternalAppend
from headwater.ingest.ratelimit import RateLimiter
from headwater.ingest.settings_document import PlannedEvents, SourceConsent
from headwater.ingest.source_function_runs import SourceFunctionRuns
from headwater.ingest.source_functions import PREFIX as SOURCE_FUNCTIONS_PREFIX
from headwater.ingest.source_functions import SourceFunctionEndpoint
from headwater.ingest.sources import SourceCache
from headwater.observe.metrics import Metrics
from headwater.pipeline.chain import StageChain
from headwater.pipeline.consumer import Consumer
from headwater.pipeline.dedup import DedupStage
from headwater.pipeline.observer import Observer
from headwater.pipeline.router import GROUP as ROUTER_GROUP
from headwater.pipeline.router import Router
from headwater.privacy.alerts import Alerts
from headwater.privacy.consent import ConsentCache
from headwater.privacy.controls import PrivacyControlsStage
from headwater.privacy.custom_matchers import CustomMatchers
from headwater.privacy.encryption import EncryptionCache
from headwater.privacy.erasure import Eraser, Expander
from headwater.privacy.inbox import GROUP as PRIVACY_INBOX_GROUP
from headwater.privacy.inbox import InboxEraser, InboxObserver
from headwater.privacy.masking import Masker, load_masker
from headwater.privacy.matchers import Matchers
from headwater.privacy.runner import DeletionRunner
from headwater.privacy.suppression import SuppressionStage
from headwater.privacy.workspace_deletion import WorkspacePurge
from headwater.protocols.blocked import BlockedEvents
from headwater.protocols.compiled import CompiledPlan
from headwater.protocols.lookup import source_lookup
from headwater.protocols.mtu import MtuStage, MtuStore
from headwater.protocols.schema_controls import IntegrationFilterCache
from headwater.protocols.source_schema import GROUP as SOURCE_SCHEMA_GROUP
from headwater.protocols.source_schema import SchemaObserver, SchemaStore
from headwater.protocols.stage import ProtocolsStage
from headwater.protocols.transformations.store import TransformationCache, TransformationStore
from headwater.protocols.violations import ViolationStore
from headwater.store.archive import GROUP as ARCHIVE_GROUP
from headwater.store.archive import Archive, ArchiveWriter
from headwater.store.archive_erasure import ArchiveEraser
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.counters import CounterStore, minute_of
from headwater.store.database import (
    WalCheckpointer,
    database_url,
    forget_deleted,
    is_sqlite,
    open_engine,
)
from headwater.store.dedup import DedupRuns
from headwater.store.ingest_log import open_ingest_log
from headwater.store.log import EventLog
from headwater.store.log_erasure import LogEraser
from headwater.store.migrations import migrate
from headwater.store.payload_erasure import payload_erasers
from headwater.store.positions import StagePositions
from headwater.store.retention import DataRetention
from headwater.store.workspace import WorkspaceStore
from headwater.unify.csv_upload import Uploads
from headwater.unify.erasure import GraphExpander
from headwater.unify.graph import GraphStore
from headwater.unify.insights import Insights
from headwater.unify.profile_api import PREFIXES as PROFILE_API_PREFIXES
from headwater.unify.profile_api import ProfileAPI
from headwater.unify.profiles import prune_events
from headwater.unify.space_deletion import SpaceDeletions
from headwater.unify.spaces import SpaceInfo, SpaceStore
from headwater.unify.sql_graph import SqlGraph
from headwater.unify.stage import APPLIED_RETENTION, IdentityStage
from headwater.unify.stage import GROUP as UNIFY_GROUP
from headwater.warehouse.erasure import warehouse_erasers
from headwater.warehouse.lake.erasure import lake_erasers
from headwater.warehouse.profiles_tables import ProfilesWarehouses
from headwater.warehouse.query import WarehouseQueries
from headwater.warehouse.scheduler import WarehouseScheduler
from headwater.warehouse.store import WarehouseStore
from headwater.web.app import WebApp
from headwater.web.sessions import Sessions

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAINTENANCE_INTERVAL = 60.0
REGULATIONS_TICK = 2.0  # how soon a new regulation (a suppression) takes effect
WAREHOUSE_TICK = 5.0  # how soon a "sync now" or a due schedule starts
ENGAGE_DRAIN_INTERVAL = 0.2  # how long queued Engage messages may wait to be appended
LISTS_TICK = 2.0  # how often the worker looks for list destinations' audiences to create
PRIVACY_ALERTS_TICK = 5.0  # how often the worker announces new unclassified fields
AUDIT_FORWARDING_TICK = 2.0  # how often audit events are forwarded into their source
SOURCE_FUNCTIONS_TICK = 0.5  # how long a source function's webhook request waits to run
READY_PROBE_INTERVAL = 1.0
COUNTER_RETENTION_DAYS = 14
SCHEMA_RETENTION_HOURS = 31 * 24  # the Source Schema's longest timeframe is 30 days
STAGE_CHAIN = "stage-chain"  # the ingest log's reader, in the consumer lag gauge


@dataclass
class Server:
    settings: ServerSettings
    admin_token_hash: str
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        registry.use_data_dir(self.settings.data_dir)  # the Actions catalog of this data dir
        self.engine = open_engine(
            database_url(self.settings.data_dir, self.settings.database),
            durability=self.settings.durability,
            background_checkpoint=True,
        )
        # The state database's writers are the worker's stages; the ingest process only reads it.
        self.checkpointer = (
            WalCheckpointer(self.engine)
            if is_sqlite(self.engine) and self.settings.run_consumers
            else None
        )
        migrate(self.engine)
        self.clock = wall_clock()
        self.store = WorkspaceStore(self.engine)
        self.ingest_log = open_ingest_log(
            self.engine,
            self.settings.data_dir,
            durability=self.settings.durability,
            clock=self.clock,
        )
        self.committer = GroupCommitter(self.ingest_log, on_commit=self._observe_commit)
        limit = self.settings.rate_limit_events_per_second
        self.tracking = TrackingAPI(
            sources=SourceCache(self.store),
            committer=self.committer,
            settings=self.settings,
            metrics=self.metrics,
            rate_limiter=RateLimiter(limit) if limit else None,
            clock=self.clock,
            planned_events=PlannedEvents(self.store),
            consent=SourceConsent(self.store),
        )
        # Source functions' webhooks: kept in the state database, run by the worker.
        self.function_store = FunctionStore(self.store)
        self.function_logs = FunctionLogs(self.store, clock=self.clock)
        self.function_requests = FunctionRequests(self.engine)
        self.source_function_endpoint = SourceFunctionEndpoint(
            SourceCache(self.store),
            self.function_requests,
            self._runs_source_function,
            clock=self.clock,
        )
        # The processed stream: what the stage chain lets through, read by every later stage.
        self.log = EventLog(self.engine, clock=self.clock, ingest_log=self.ingest_log)
        self.api = create_api(
            self.engine,
            admin_token_hash=self.admin_token_hash,
            extra_routers=[
                debugger_router,
                violations_router,
                source_schema_router,
                tester_router,
            ],
            archive_dir=self.settings.archive_dir,
            archive_retention_days=self.settings.archive_retention_days,
            clock=self.clock,
        )
        use_functions(
            self.api,
            limit=self.settings.functions_limit,
            base_url=self.settings.base_url,
            runtime=lambda: self._sandbox(max_processes=1),  # the test runner's, on first use
        )
        # What a reader without PII Access sees masked: rebuilt when the configuration moves.
        self._masker: ConfigSnapshot[Masker] = ConfigSnapshot(
            self.store.config_version, lambda: load_masker(self.store), Masker(Matchers())
        )
        use_masker(self.api, self._masker.get)
        # The audit trail: what each change through the API did, as the export shows it.
        use_audit(self.api, lambda: workspace_view(self.store))
        # The web app at /: its pages read and change the workspace through self.api.
        self.web = WebApp(
            self.api,
            self.store,
            admin_token_hash=self.admin_token_hash,
            clock=self.clock,
            public_url=self.settings.public_url,
        )
        # The Profile API (Segment's shapes, apart from the REST API), in the api process.
        self._graphs: dict[str, GraphStore] = {}
        self.profile_api = ProfileAPI(
            SpaceStore(self.store),
            self.engine,
            self._graph_of,
            requests_per_second=self.settings.profile_api_requests_per_second,
            masker=self._masker.get,  # tokens without PII Access (§9.8)
        )
        self.archive = Archive(self.settings.archive_dir)
        owner = f"{os.uname().nodename}:{os.getpid()}"
        self.destinations = DestinationStore(self.store)
        destination_cache = DestinationCache(self.destinations, self.store)
        self._redirects = Redirects(self.settings.request_redirects)
        # Segment's rates for Engage's destinations (§14.4) apply on the spaces' Engage sources.
        engage_sources: ConfigSnapshot[frozenset[str]] = ConfigSnapshot(
            self.store.config_version,
            lambda: frozenset(
                s.engage_source_id for s in SpaceStore(self.store).list() if s.engage_source_id
            ),
            frozenset(),
        )
        # Destination functions are destinations of the catalog (function:<name>); delivery
        # runs them, and insert functions, in the functions' sandbox.
        # Every invocation is added to the functions' monthly usage (§11.1).
        self.function_usage = FunctionUsage(
            self.store,
            clock=self.clock,
            monthly_execution_ms=self.settings.functions_monthly_execution_ms,
        )
        self.functions = FunctionCatalog(
            self.function_store, self.function_logs, self.function_usage
        )
        registry.use_functions(self.functions)
        self.delivery = DeliveryEngine(
            self.engine,
            destination_cache,
            functions=self.functions,
            sandbox=self._sandbox,
            engage_sources=engage_sources.get,
            owner=f"{owner}:delivery",
            redirects=self._redirects,
            actions_dir=actions_dir(self.settings.data_dir),
            # Without the consumers it only sends the Event Tester's events: one Node process.
            actions_processes=(self.settings.actions_processes or min(2, os.cpu_count() or 1))
            if self.settings.run_consumers
            else 1,
        )
        use_delivery(self.api, self.delivery)  # the Event Tester sends with it
        # Profile CSV uploads send their rows as Identify calls through the internal path.
        use_appender(self.api, InternalAppend(self.ingest_log, clock=self.clock))
        router_owner = f"{owner}:router"
        self.dedup_runs = DedupRuns(self.engine, clock=self.clock)
        self.schema_observer = SchemaObserver(self.engine, clock=self.clock)
        self.protocols = ProtocolsStage(
            source_lookup(self.engine),
            config_version=self.store.config_version,
            engine=self.engine,
            clock=self.clock,
            appender=InternalAppend(self.ingest_log, clock=self.clock),
            schema=self.schema_observer,  # blocked events never reach its consumer
        )
        use_plans(self.api, self._connected_plan)
        self.chain = StageChain(
            self.ingest_log,
            self.log,
            StagePositions(self.engine, clock=self.clock),
            [
                DedupStage(
                    self.dedup_runs,
                    window_hours=self.settings.dedup_window_hours,
                    clock=self.clock,
                    on_duplicates=self.metrics.duplicates.inc,
                ),
                # Suppressed users' events stop here, before anything else sees them (§24).
                SuppressionStage(self.engine),
                PrivacyControlsStage(  # §24 step 3: Inventory fields removed at the source
                    self.engine, config_version=self.store.config_version, clock=self.clock
                ),
                self.protocols,
                MtuStage(self.engine),  # last: it counts what reaches the processed stream
            ],
            state=self.engine,
            owner=f"{owner}:chain",
            clock=self.clock,
            on_processed=self.metrics.accepted.inc,
        )
        # The Source Schema; the Protocols stage reports what it blocks to it (blocked()).
        self.archive_consumer = Consumer(
            self.log, "archive", ArchiveWriter(self.settings.archive_dir), owner=owner
        )
        # Engage computes in identity resolution's pass; its messages wait in its outbox
        # until the drain appends them from each space's Engage source.
        planned = Planned(self.store)
        journeys = JourneyFollower(LiveJourneys(self.store).journeys, planned.computations)
        self.engage = EngageStage(
            self.engine,
            planned.computations,
            planned.connections,
            clock=self.clock,
            followers=[journeys],  # journeys move on Engage's results, in the same pass
        )
        # SQL traits: scheduled warehouse queries whose changed rows go out through the outbox.
        self.warehouse_queries = WarehouseQueries(
            WarehouseStore(self.store), self.settings.data_dir
        )
        use_warehouse_queries(self.api, self.warehouse_queries)
        self.sql_traits = SqlTraitRuns(
            self.engine, self.warehouse_queries, owner=f"{owner}:sql-traits", clock=self.clock
        )
        # Batch computation: scheduled queries on each space's Profiles Sync tables, their
        # results applied by Engage's observer in identity resolution's pass.
        self.engage_batch = BatchRuns(
            self.engine,
            self.store,
            ProfilesWarehouses(WarehouseStore(self.store), self.engine, self.settings.data_dir),
            owner=f"{owner}:engage-batch",
            clock=self.clock,
        )
        use_batch_runs(self.api, self.engage_batch)
        self.engage_drain = Drain(
            self.engine, InternalAppend(self.ingest_log, clock=self.clock), clock=self.clock
        )
        self.identity = IdentityStage(
            self.engine,
            self.archive,
            clock=self.clock,
            archive_caught_up=lambda: self.log.lag("archive") == 0,
            observers=[self.engage],
        )
        self._source_settings: ConfigSnapshot[Mapping[str, Mapping[str, Any]]] = ConfigSnapshot(
            self.store.config_version,
            lambda: {s.id: s.settings for s in self.store.all_sources()},
            {},
        )
        self.consumers = [
            self.archive_consumer,
            Consumer(self.log, "observer", Observer(self.engine), owner=owner),
            Consumer(self.log, SOURCE_SCHEMA_GROUP, self.schema_observer, owner=owner),
            # The Privacy Portal's Inbox: every field scanned sources send, pre-classified.
            Consumer(
                self.log,
                PRIVACY_INBOX_GROUP,
                InboxObserver(
                    self.engine,
                    ConfigSnapshot(
                        self.store.config_version,
                        CustomMatchers(self.store).matchers,
                        CustomMatchers(self.store).matchers(),
                    ).get,
                    self._source_settings.get,
                    clock=self.clock,
                ),
                owner=owner,
            ),
            # Identity resolution: one process resolves every space (one writer per graph).
            Consumer(
                self.log,
                UNIFY_GROUP,
                self.identity,
                owner=owner,
                exclusive=True,
                idle=self.identity.replay,
            ),
            Consumer(
                self.log,
                ROUTER_GROUP,
                Router(
                    self.log,
                    destination_cache,
                    self.delivery.queue,
                    owner=router_owner,
                    schema_filter=schema_integration_filter(
                        IntegrationFilterCache(self.engine).turned_off
                    ),
                    transformations=TransformationCache(
                        TransformationStore(self.store), self.store
                    ).current,
                    consent=ConsentCache(self.engine).current,
                    encryption=EncryptionCache(self.engine).current,
                ),
                owner=router_owner,
            ),
        ]
        for consumer in self.consumers:
            self.log.register(consumer.group)
        self._ready_checked = 0.0
        self._maintenance: asyncio.Task[None] | None = None
        self._warehouse_task: asyncio.Task[None] | None = None
        self._engage_task: asyncio.Task[None] | None = None
        self._sql_traits_task: asyncio.Task[None] | None = None
        self._lists_task: asyncio.Task[None] | None = None
        self._privacy_task: asyncio.Task[None] | None = None
        self._functions_task: asyncio.Task[None] | None = None
        self._audit_task: asyncio.Task[None] | None = None
        self.source_function_runs: SourceFunctionRuns | None = None
        self.privacy_alerts = Alerts(
            self.store, appender=InternalAppend(self.ingest_log, clock=self.clock), clock=self.clock
        )
        self.warehouse_scheduler = WarehouseScheduler(
            WarehouseStore(self.store), self.archive, self.settings.data_dir
        )
        # Regulations: suppressions take effect and deletions run here, in the worker. The
        # identity graph widens each subject first; then each store's eraser, in the order of
        # ``current_erasers``. The runner keeps these lists; each pass refreshes the erasers
        # so warehouses and destinations added or removed since are seen.
        self.expanders: list[Expander] = [GraphExpander(self.engine)]
        self.erasers: list[Eraser] = []
        self.deletions = DeletionRunner(
            self.engine,
            self.expanders,
            self.erasers,
            clock=self.clock,
            source_exists=lambda source_id: self.store.get_source(source_id) is not None,
        )
        self._regulations_task: asyncio.Task[None] | None = None
        # The workspace's deletion, once irreversible: purged in steps, resumable (§11).
        self.workspace_purge = WorkspacePurge(
            self.engine,
            self.settings.archive_dir,
            clock=self.clock,
            settled=self._settled,
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def _sandbox(self, max_processes: int = 2) -> SandboxRuntime:
        """A functions' sandbox runtime with this server's fetch rules and, when installed
        (``serve`` installs them), the JavaScript libraries."""
        libraries = libraries_dir(self.settings.data_dir)
        return SandboxRuntime(
            fetch_allow=self.settings.functions_fetch_allow,
            redirects=self.settings.request_redirects,
            libraries=libraries if libraries_installed(libraries) else None,
            max_processes=max_processes,
        )

    def start(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.start()
        if self.settings.run_consumers:
            self.chain.start()
            for consumer in self.consumers:
                consumer.start()
            self.delivery.start()

    def stop(self) -> None:
        self.chain.stop()
        for consumer in self.consumers:
            consumer.stop()
        self.delivery.stop()
        self.committer.stop()
        self.ingest_log.close()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()

    def _connected_plan(self, source_id: str) -> CompiledPlan | None:
        """The plan the Protocols stage applies to a source (the schema's Planned column)."""
        found = self.protocols.sources().get(source_id)
        return found.plan if found is not None else None

    def _graph_of(self, space: SpaceInfo) -> GraphStore:
        """A space's identity graph, as the Profile API reads it: without a cache, since the
        graph's writer (identity resolution) may be another process."""
        graph = self._graphs.get(space.id)
        if graph is None:
            graph = self._graphs[space.id] = SqlGraph(self.engine, space.id, cache_size=0)
        return graph

    def maintain(self) -> None:
        """Forget old dedup keys, counters and latencies, blocked events, violations and MTU
        months past retention; purge the archive past retention."""
        now = self.clock()
        hour = int(now) // 3600
        self.dedup_runs.maintain(
            before_hour=hour - self.settings.dedup_window_hours - 1, closed_before_hour=hour - 1
        )
        retention = DataRetention(
            WorkspaceStore(self.engine, clock=self.clock), self.settings.archive_retention_days
        )
        self.archive.purge(retention.days(), now=datetime.fromtimestamp(now, UTC))
        BlockedEvents(self.engine, clock=self.clock).purge()
        ViolationStore(self.engine, clock=self.clock).purge()
        MtuStore(self.engine, clock=self.clock).purge()
        Insights(clock=self.clock).purge(self.engine)  # Profiles Insights: 30 days, 500 a kind
        Uploads(WorkspaceStore(self.engine, clock=self.clock)).purge()  # Update History: 30 days
        self.function_logs.prune()  # the Errors tab: 30 days
        AuditTrail(self.engine, clock=self.clock).prune()  # 90 days
        Sessions(self.engine, clock=self.clock).prune()  # the web app's, once expired
        # Delivery Overview and Event Delivery look back two weeks at most, as in Segment.
        oldest_minute = minute_of(now) - COUNTER_RETENTION_DAYS * 24 * 60
        counters = CounterStore(self.engine)
        counters.roll_up(now)  # hourly totals: the overview reads a day as 24 rows a key
        counters.expire(oldest_minute)
        self.delivery.queue.expire_latencies(oldest_minute)
        SchemaStore(self.engine).expire(before_hour=hour - SCHEMA_RETENTION_HOURS)
        prune_events(self.engine, now)  # profile timelines keep 14 days
        for space in SpaceStore(self.store).list():  # messageIds applied: the dedup window
            SqlGraph(self.engine, space.id, cache_size=0).prune(now - APPLIED_RETENTION)

    async def _maintenance_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.maintain)
            except Exception:
                logger.exception("maintenance failed; will try again")
            await asyncio.sleep(MAINTENANCE_INTERVAL)

    async def _engage_loop(self) -> None:
        """Engage's outbox to the ingest log: batch after batch while messages wait, then a
        short sleep (an audience entered reaches its destinations within seconds)."""
        spaces = SpaceStore(self.store)
        for space in spaces.list():  # spaces made before Engage: their Engage sources
            await asyncio.to_thread(spaces.engage_source, space.id)
        while True:
            try:
                appended = await asyncio.to_thread(self.engage_drain)
            except Exception:
                logger.exception("Engage's outbox could not be appended; will try again")
                appended = 0
            if not appended:
                await asyncio.sleep(ENGAGE_DRAIN_INTERVAL)

    async def _lists_loop(self) -> None:
        """List destinations' audiences to create (connected by ``headwater apply``, or whose
        ``createAudience`` failed and is due again), through the delivery engine's runtime."""
        lists = ListAudiences(WorkspaceStore(self.engine, self.clock))
        while True:
            try:
                await lists.create(self.delivery.audience_hook)
            except Exception:
                logger.exception("Engage: list audiences could not be created; will try again")
            await asyncio.sleep(LISTS_TICK)

    async def _privacy_alerts_loop(self) -> None:
        """The Privacy Portal's alerts on new unclassified fields (Slack, a source)."""
        while True:
            try:
                await asyncio.to_thread(self.privacy_alerts.run_once)
            except Exception:
                logger.exception("privacy alerts failed; will try again")
            await asyncio.sleep(PRIVACY_ALERTS_TICK)

    async def _audit_forwarding_loop(self) -> None:
        """Audit events into the source audit forwarding names (§21)."""
        forwarding = AuditForwarding(self.engine, clock=self.clock)
        appender = InternalAppend(self.ingest_log, clock=self.clock)
        while True:
            try:
                await asyncio.to_thread(forwarding.run_once, appender)
            except Exception:
                logger.exception("audit forwarding failed; will try again")
            await asyncio.sleep(AUDIT_FORWARDING_TICK)

    async def _warehouse_queries_loop(self) -> None:
        """SQL traits and Engage batch runs that are due, in a thread (warehouse queries)."""
        while True:
            try:
                await asyncio.to_thread(self.sql_traits.run_due)
            except Exception:
                logger.exception("SQL traits failed; will try again")
            try:
                await asyncio.to_thread(self.engage_batch.run_due)
            except Exception:
                logger.exception("Engage's batch computation failed; will try again")
            await asyncio.sleep(WAREHOUSE_TICK)

    def current_erasers(self) -> list[Eraser]:
        """Every store's eraser as the configuration stands now, in the order the runner calls
        them, each after the one before has finished: the log, the other internal stores, the
        archive, the warehouses and lakes (loaded from the archive), the destinations."""
        internal: list[Eraser] = [
            # First: once nothing from before the regulation is left in the log, nothing of
            # the subject can still reach the stores erased after it.
            LogEraser(self.ingest_log, self.log),
            *payload_erasers(self.engine),
            FunctionLogEraser(self.engine),  # the functions' Errors tab
            FunctionRequestEraser(self.engine),  # source functions' waiting requests
            FunctionObjectEraser(self.engine),  # Segment.set objects (warehouses only)
            profiles_eraser(self.engine),
            InboxEraser(self.engine),
        ]
        # The archive is rewritten once what arrived before the regulation has reached it.
        archive = ArchiveEraser(
            self.settings.archive_dir,
            pending=lambda t: self.chain.behind(t) or self.log.behind(ARCHIVE_GROUP, t),
        )
        warehouse_store = WarehouseStore(self.store)
        warehouses: list[Eraser] = [
            *warehouse_erasers(warehouse_store, self.settings.data_dir, clock=self.clock),
            *lake_erasers(warehouse_store, self.settings.data_dir),
        ]
        destinations: list[Eraser] = [
            DestinationEraser(d, self.delivery, self._redirects) for d in self.destinations.list()
        ]
        return [*internal, archive, *warehouses, *destinations]

    def _runs_source_function(self, source_id: str) -> bool:
        attached = self.function_store.source_function(source_id)
        return attached is not None and attached.function.deployed_version is not None

    def _settled(self) -> bool:
        """Whether everything accepted went through the chain and every consumer group."""
        return self.chain.lag()[0] == 0 and all(self.log.lag(c.group) == 0 for c in self.consumers)

    def run_regulations(self) -> None:
        """Regulations, a workspace's purge and spaces past their grace: whatever deleted
        something, its rows' old pages then leave the WAL (secure_delete zeroed them in the
        file)."""
        purged = self.workspace_purge.run_due() is not None
        spaces = SpaceDeletions(self.store, clock=self.clock).run_due()
        self.erasers[:] = self.current_erasers()
        if self.deletions.run_due() or purged or spaces:
            forget_deleted(self.engine)

    async def _source_functions_loop(self) -> None:
        """Source functions' stored webhook requests that are due (new ones and retries), run
        in the sandbox; its processes start with the first request and stop with the worker."""
        runtime: SandboxRuntime | None = None
        try:
            while True:
                try:
                    if runtime is None and await asyncio.to_thread(
                        self.function_requests.any_pending
                    ):
                        runtime = self._sandbox()
                        self.source_function_runs = self._source_function_runs(runtime)
                    runs = self.source_function_runs
                    if runs is not None and await runs.run_due():
                        continue  # busy: the next batch at once
                except Exception:
                    logger.exception("source functions failed; will try again")
                await asyncio.sleep(SOURCE_FUNCTIONS_TICK)
        finally:
            if runtime is not None:
                await runtime.close()

    def _source_function_runs(self, runtime: SandboxRuntime) -> SourceFunctionRuns:
        return SourceFunctionRuns(
            self.function_requests,
            self.function_store,
            self.function_logs,
            runtime,
            InternalAppend(self.ingest_log, clock=self.clock),
            FunctionObjects(self.engine),
            clock=self.clock,
            usage=self.function_usage,
        )

    async def _regulations_loop(self) -> None:
        """Regulations due: new suppressions, deletions' steps that are due again."""
        while True:
            try:
                await asyncio.to_thread(self.run_regulations)
            except Exception:
                logger.exception("regulations failed; will try again")
            await asyncio.sleep(REGULATIONS_TICK)

    async def _warehouse_loop(self) -> None:
        """Warehouse syncs, in a thread of their own: they are long blocking batch jobs."""
        while True:
            try:
                await asyncio.to_thread(self.warehouse_scheduler.tick)
            except Exception:
                logger.exception("warehouse syncs failed; will try again")
            await asyncio.sleep(WAREHOUSE_TICK)

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(PROFILE_API_PREFIXES):
                await self.profile_api(scope, receive, send)
            elif path.startswith(SOURCE_FUNCTIONS_PREFIX):
                await self.source_function_endpoint(scope, receive, send)
            elif path.startswith("/v1/"):
                if self.settings.run_ingest:
                    await self.tracking(scope, receive, send)
                else:
                    await _plain(
                        send,
                        503,
                        b'{"code":"unavailable","message":'
                        b'"This process runs the worker role only; send events to an '
                        b'ingest process."}',
                        [(b"retry-after", b"5")],
                    )
            elif path == "/health":
                await _plain(send, 200, b'{"status":"ok"}')
            elif path == "/ready":
                ready, reason = await asyncio.to_thread(self.ready)
                body = (
                    b'{"status":"ready"}'
                    if ready
                    else (b'{"status":"unavailable","reason":' + _json_str(reason) + b"}")
                )
                await _plain(
                    send, 200 if ready else 503, body, [] if ready else [(b"retry-after", b"5")]
                )
            elif path == "/metrics":
                await asyncio.to_thread(self._update_gauges)
                await _plain(
                    send,
                    200,
                    self.metrics.render(),
                    [(b"content-type", self.metrics.content_type.encode())],
                )
            elif path.startswith(("/api/", "/segment/")):
                await self.api(scope, receive, send)
            else:
                await self.web(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets are not served
            await self.api(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.start()
                    if self.settings.run_consumers:  # the worker's: one process does it
                        self._maintenance = asyncio.create_task(self._maintenance_loop())
                        self._warehouse_task = asyncio.create_task(self._warehouse_loop())
                        self._engage_task = asyncio.create_task(self._engage_loop())
                        self._sql_traits_task = asyncio.create_task(self._warehouse_queries_loop())
                        self._lists_task = asyncio.create_task(self._lists_loop())
                        self._regulations_task = asyncio.create_task(self._regulations_loop())
                        self._privacy_task = asyncio.create_task(self._privacy_alerts_loop())
                        self._functions_task = asyncio.create_task(self._source_functions_loop())
                        self._audit_task = asyncio.create_task(self._audit_forwarding_loop())
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.warehouse_scheduler.stop()  # a running sync stops after its chunk
                self.sql_traits.stop()  # a running query stops at its next batch of rows
                tasks = (
                    self._maintenance,
                    self._warehouse_task,
                    self._engage_task,
                    self._sql_traits_task,
                    self._lists_task,
                    self._regulations_task,
                    self._privacy_task,
                    self._functions_task,
                    self._audit_task,
                )
                for task in tasks:
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                await close_runtime(self.api)  # the functions test runner's sandboxes
                await asyncio.to_thread(self.stop)
                if not self.settings.run_consumers:
                    # The engine did not run here; the Event Tester may have started its
                    # actions runtime on this loop.
                    await self.delivery.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- health -------------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Whether the event log takes writes (the last commit worked, or a probe write does)
        and, where this process archives, whether the archive can write its files.

        An archive that cannot write loses nothing (events wait in the log), but the disk
        behind it is full or gone and the log grows meanwhile: traffic belongs elsewhere.
        """
        failing = self.archive_consumer.failing if self.settings.run_consumers else None
        if failing is not None:
            return False, f"the archive cannot write its files: {failing}"
        if self.committer.healthy and time.monotonic() - self._ready_checked < READY_PROBE_INTERVAL:
            return True, ""
        try:
            self.ingest_log.probe()
        except Exception as exc:
            return False, f"the event log cannot take writes: {type(exc).__name__}: {exc}"
        self._ready_checked = time.monotonic()
        self.committer.healthy = True  # writes work again; the next commit will confirm
        return True, ""

    def _observe_commit(self, seconds: float, _records: int) -> None:
        self.metrics.commit_seconds.observe(seconds)

    def _update_gauges(self) -> None:
        """Read the consumer lag; with the database down the gauges keep their last values."""
        try:
            records, seconds = self.chain.lag()
            self.metrics.consumer_lag.labels(STAGE_CHAIN).set(records)
            self.metrics.stage_lag_seconds.set(seconds)
            for consumer in self.consumers:
                self.metrics.consumer_lag.labels(consumer.group).set(self.log.lag(consumer.group))
        except OperationalError as exc:
            logger.warning("metrics: cannot read the consumer lag: %s", exc)


async def _plain(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = headers or []
    if not any(h[0] == b"content-type" for h in headers):
        headers = [*headers, (b"content-type", b"application/json")]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _json_str(text: str) -> bytes:
    return msgspec.json.encode(text)
