"""Server start-up and shutdown: restore state, warm kernels, then health SERVING; drain on
SIGTERM, then a last checkpoint; TLS or mutual TLS on the port when ``[tls]`` says so (its
files re-read on SIGHUP); the tokens file (or, under mutual TLS, the certificate revocation
list) re-read when it changes (checked every RELOAD_POLL_S) and on SIGHUP.

Stopping takes at most ``grace`` plus STOP_BOUND_S, whatever the clients do: calls still open
when the grace ends are cancelled, and if grpc has not finished them STOP_BOUND_S later the
server writes its last checkpoint anyway (``RunningServer.stuck`` then tells the command line
to leave without waiting for those threads).

Health: ``""`` and the Screening service are SERVING while the server answers (NOT_SERVING
before it is ready, while it stops, and once another server holds its store); with a store,
``STORE_HEALTH_SERVICE`` is SERVING while the store keeps this server's state and NOT_SERVING
while it cannot (unreachable, a failed checkpoint, the claim being taken back): the server
then goes on answering, its decisions marked degraded.
"""

from __future__ import annotations

import gc
import ipaddress
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from screening._reflection import enable_reflection
from screening.audit import AuditTrail
from screening.auth import Authenticator, AuthInterceptor, Caller, FailureThrottle
from screening.config import Settings
from screening.convert import Converter
from screening.engine import Engine
from screening.errors import ConfigError, ScreeningError, StoreBusy
from screening.lanes import AdmissionInterceptor, Lanes, RefusalLog
from screening.logs import get_logger
from screening.masking import Masker
from screening.metrics import Metrics
from screening.policy import Policy, load_policy
from screening.rpc import add_screening_service
from screening.service import ScreeningService
from screening.shadow import ShadowRecorder
from screening.store import (
    Checkpointer,
    EventWriter,
    Store,
    StoreStatus,
    TimedStore,
    WriterLease,
    feedback_journal_writer,
    journal_writer,
    open_store,
    policy_keeper,
    registry_journal_writer,
    restore_engine,
)
from screening.tls import ServerCertificates, ServerTls
from screening.v1 import screening_pb2 as pb

__all__ = [
    "RELOAD_POLL_S",
    "SERVICE_NAME",
    "STOP_BOUND_S",
    "STORE_HEALTH_SERVICE",
    "RunningServer",
    "serve_forever",
    "start_server",
]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Screening"].full_name
# the health "service" saying whether the state store keeps this server's state
STORE_HEALTH_SERVICE = "screening.store"
# How long stopping may take beyond the grace period before the last checkpoint is written
# regardless of calls grpc has not finished.
STOP_BOUND_S = 5.0
# How often a serving process looks whether its tokens file (or CRL) changed: a revoked token or
# certificate is refused at most this long after the file is written; SIGHUP re-reads it at once.
RELOAD_POLL_S = 2.0


class _GcFreezer(threading.Thread):
    """Keeps full garbage collections off the request path.

    Every decision leaves long-lived objects behind (the idempotency memory, interned ids); a
    full collection walks all of them while holding the GIL: 310 ms with the default 1 M
    remembered decisions, measured here. Once a second this collects the young generations
    (short-lived cycles die there) and freezes the survivors, so the old generation stays
    empty and full collections stay near 0 ms. Frozen objects are still freed by reference
    counting when dropped; only a cycle that outlives a young collection is never reclaimed.
    """

    def __init__(self, period_s: float = 1.0) -> None:
        super().__init__(name="gc-freezer", daemon=True)
        self.period_s = period_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.period_s):
            gc.collect(1)
            gc.freeze()


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    engine: Engine
    health: health.HealthServicer
    warm_seconds: float
    gc_freezer: _GcFreezer | None = None
    store: Store | None = None
    checkpointer: Checkpointer | None = None
    lease: WriterLease | None = None
    lanes: Lanes | None = None
    metrics: Metrics | None = None
    metrics_port: int = 0
    service: ScreeningService | None = None
    shadow: ShadowRecorder | None = None
    auth: Authenticator | None = None
    tls: ServerTls | None = None
    audit: AuditTrail | None = None
    events: EventWriter | None = None  # the event journal's group-commit writer
    flight: Any = None  # screening.flight.FlightEndpoint when [flight] port is set
    flight_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def stuck(self) -> int:
        """Calls still holding a thread after ``stop`` (a process should not wait for them)."""
        return self.lanes.held() if self.lanes is not None else 0

    def reload_policy(self, by: str = "SIGHUP") -> bool:
        """Re-read the configured policy file and make it the active policy; False (and an
        error line naming the file and line) when it does not load: the running one stays."""
        log = get_logger("screening.server")
        path = self.engine.settings.policy.file
        if self.service is None:
            return False
        try:
            # both read and checked before either is swapped: a bad shadow file changes nothing
            new = load_policy(path or None)
            use_shadows = self.read_shadows(by)
            self.service.use_policy(new, by=by)
        except ScreeningError as exc:  # not loaded, or the store cannot keep it
            log.error("policy_refused", by=by, file=path or "(default)", error=str(exc),
                      running=self.engine.policy.version,
                      running_shadows=[s.version for s in self.engine.shadows])
            return False
        use_shadows()
        return True

    def reload_shadows(self, by: str = "SIGHUP") -> bool:
        """Re-read the shadow policy files (``[policy] shadow_files``) and decide with them from
        the next transaction; False (and an error line) when one does not load: the running set
        stays whole."""
        try:
            use_shadows = self.read_shadows(by)
        except ConfigError as exc:
            get_logger("screening.server").error(
                "shadow_policies_refused", by=by, error=str(exc),
                running=[s.version for s in self.engine.shadows])
            return False
        use_shadows()
        return True

    def read_shadows(self, by: str) -> Callable[[], None]:
        """Read and check the shadow policy files (``[policy] shadow_files``); returns what
        makes them the running set. Raises ConfigError (naming the file and line) when one does
        not load."""
        recorder = self.shadow
        paths = self.engine.settings.policy.shadow_paths()
        if recorder is None or not paths:
            return lambda: None
        shadows = tuple(load_policy(p) for p in paths)

        def use() -> None:
            self.engine.set_shadows(shadows, then=lambda: recorder.use(shadows))
            get_logger("screening.server").info("shadow_policies_swapped", by=by,
                                                versions=[s.version for s in shadows])
        return use

    def reload_auth(self, by: str = "SIGHUP") -> bool:
        """Re-read the tokens file (or the CRL) and use it from the next call on (a revoked
        token or certificate is refused from then); False (and an error line naming the file)
        when it does not load: what is in use stays. Calls already running, open streams
        included, go on."""
        log = get_logger("screening.server")
        if self.auth is None or self.auth.path is None:
            return False
        try:
            counts = self.auth.reload()
        except ConfigError as exc:
            log.error("auth_refused", by=by, file=str(self.auth.path), error=str(exc))
            return False
        log.info("auth_reloaded", by=by, file=str(self.auth.path), **counts)
        return True

    def reload_tls(self, by: str = "SIGHUP") -> bool:
        """Re-read the certificate, key and client CA files for the connections that follow
        (open ones keep theirs); False (and an error line naming the setting and file) when
        they do not load: the certificates in use stay."""
        if self.tls is None:
            return False
        log = get_logger("screening.server")
        try:
            certs = self.tls.reload()
        except ConfigError as exc:
            log.error("tls_refused", by=by, error=str(exc))
            return False
        _log_certificates(log, "tls_reloaded", certs, by=by)
        return True

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, drain in-flight calls for ``grace`` s (then cancel them), then write a
        last checkpoint (not when another server holds the store now: it would be refused); at
        most ``grace`` + STOP_BOUND_S (plus the checkpoint) in all."""
        self.health.enter_graceful_shutdown()
        waited = (grace or 0.0) + STOP_BOUND_S
        stopped = self.server.stop(grace)
        if self.flight is not None:  # drained in the same grace period as the gRPC calls
            if not self.flight.stop(waited):
                get_logger("screening.server").warning(
                    "drain_incomplete", waited_s=waited, endpoint="flight",
                    detail="Flight exchanges still running; writing the last checkpoint anyway")
            self.flight = None
        if not stopped.wait(waited):
            get_logger("screening.server").warning(
                "drain_incomplete", waited_s=waited, calls_left=self.stuck,
                detail="calls grpc did not finish; writing the last checkpoint anyway")
        if self.lanes is not None:
            self.lanes.shutdown_all()
        if self.audit is not None:  # every queued record written, a last anchor, fsync'd
            self.audit.close()
            self.audit = None
        self.engine.stop_prefill()
        if self.gc_freezer is not None:
            self.gc_freezer.stopped.set()
        if self.events is not None:  # every accepted event written before the last checkpoint
            self.events.close()
            self.events = None
        if self.checkpointer is not None:
            self.checkpointer.stop()
            if self.lease is None or not self.lease.lost:
                self.checkpointer.checkpoint("shutdown")
            self.checkpointer = None
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.metrics is not None:
            self.metrics.close()
        if self.shadow is not None:
            self.shadow.close()
            self.shadow = None
        # start froze the long-lived objects out of the collector's way (gc.freeze); frozen, a
        # reference cycle among them would keep this server's state alive after it stopped (a
        # process that starts servers one after another, as the tests do, grew by each one;
        # another server still running in the process is frozen again by its _GcFreezer)
        gc.unfreeze()


def _authenticator(settings: Settings, auth: Authenticator | None) -> Authenticator:
    if auth is not None:
        return auth
    if settings.tls.mutual:
        if not settings.auth.enabled:
            raise ConfigError("--no-auth ([auth] enabled = false) with [tls] client_ca_file: "
                              "under mutual TLS the client certificates say who calls; drop one")
        if settings.auth.tokens_file:
            raise ConfigError("[auth] tokens_file: not used under mutual TLS ([tls] "
                              "client_ca_file), where the client certificates say who calls; "
                              "drop one")
        return Authenticator.from_certificates(
            Path(settings.tls.crl_file) if settings.tls.crl_file else None,
            Path(settings.tls.client_ca_file))
    if not settings.auth.enabled:
        return Authenticator({}, enabled=False)
    if not settings.auth.tokens_file:
        raise ConfigError(
            "no tokens configured: set [auth] tokens_file (create tokens with "
            "`screening token create --role bank --file tokens.toml`), or pass --no-auth for a "
            "local development server")
    return Authenticator.from_file(Path(settings.auth.tokens_file))


def _is_loopback(host: str) -> bool:
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _listening(settings: Settings) -> list[tuple[str, str, str]]:
    """Every address the server listens on for callers: (what, host, the setting naming it).
    The Flight endpoint takes the same tokens and certificate, so the same bind rules."""
    out = [("gRPC port", settings.server.host, "--host ([server] host)")]
    if settings.flight.port != -1:
        out.append(("Arrow Flight port", settings.flight.host or settings.server.host,
                    "[flight] host" if settings.flight.host else "--host ([server] host)"))
    return out


def _check_open_bind(settings: Settings, log: Any) -> None:
    """Without auth every caller is admin: listen beyond loopback only when told to."""
    for what, host, setting in _listening(settings):
        if _is_loopback(host):
            continue
        if not settings.auth.allow_insecure_bind:
            raise ConfigError(
                f"--no-auth makes every caller admin: refusing to listen on {host} ({what}, "
                f"{setting}), which is not a loopback address; use 127.0.0.1, or add "
                "--allow-insecure-bind ([auth] allow_insecure_bind) to do it anyway")
        log.warning("insecure_bind", host=host, listener=what,
                    detail="no auth on a non-loopback address: anyone who reaches it is admin")


def _check_plaintext(settings: Settings, log: Any) -> None:
    """Without TLS, tokens and replies cross the network in clear: loopback only, unless told."""
    for what, host, setting in _listening(settings):
        if not _is_loopback(host) and not settings.tls.allow_plaintext:
            raise ConfigError(
                f"no TLS: refusing to serve plaintext on {host} ({what}, {setting}), which is "
                "not a loopback address; give the server a certificate ([tls] cert_file and "
                "key_file, --tls-cert/--tls-key; `screening certs dev --out DIR` makes some for "
                "trying it), or add --allow-plaintext ([tls] allow_plaintext) when a proxy in "
                "front terminates TLS")
        log.warning("plaintext", host=host, listener=what,
                    detail=f"no TLS on the {what}: tokens and replies are not encrypted "
                           "([tls] cert_file)")


def _restore(engine: Engine, store: Store, masker: Masker, log: Any) -> None:
    """Load the latest checkpoint and newer watchlist changes; log what came back (masked)."""
    report = restore_engine(engine, store)
    h = report.header
    for note in report.notes:
        log.warning("restore_note", note=note)
    if h is None:
        log.info("no_checkpoint", store=store.location, journal_applied=report.journal_applied,
                 events_applied=report.events_applied)
    else:
        log.info("state_restored", store=store.location, where=h.where, bytes=h.size,
                 format=h.format, policy=h.policy_version,
                 age_s=round((engine.clock_ms() - h.created_ms) / 1000, 1),
                 seconds=round(report.seconds, 3), journal_applied=report.journal_applied,
                 events_applied=report.events_applied, **h.counts)
    if report.journal_applied:
        log.info("watchlist_journal_applied", changes=report.journal_applied,
                 entities=[masker(v) for v in report.journal_entities[:100]])


def start_server(settings: Settings, *, policy: Policy | None = None, masker: Masker | None = None,
                 auth: Authenticator | None = None, port: int | None = None,
                 engine: Engine | None = None, store: Store | None = None) -> RunningServer:
    """Build the engine, restore its state from the store, warm every kernel, bind the port and
    report SERVING when ready.

    The store is ``store`` or the one ``[storage]`` names (none by default). Raises
    StoreUnavailable or CheckpointError (one line naming the store, file or key) when the
    state cannot be restored: a server never starts with less than its saved state.
    """
    log = get_logger("screening.server")
    authenticator = _authenticator(settings, auth)
    if not authenticator.enabled:
        _check_open_bind(settings, log)
        log.warning("auth_disabled", detail="every caller is admin; development only")
    if settings.tls.enabled:
        tls: ServerTls | None = ServerTls(settings.tls)
    else:
        tls = None
        _check_plaintext(settings, log)
    policy = policy or load_policy(settings.policy.file)
    masker = masker or Masker()
    engine = engine or Engine(settings, policy)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    store = store or open_store(settings.storage)
    if store is None:
        return _serve(settings, policy, masker, authenticator, engine, health_servicer, port, log,
                      tls=tls)
    store = TimedStore(store)  # its calls go to the metrics once they exist (_serve)

    store_log = get_logger("screening.store")

    def lost() -> None:  # another server owns the store now: send the traffic there
        _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)

    def store_health(ok: bool) -> None:
        health_servicer.set(STORE_HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING if ok
                            else health_pb2.HealthCheckResponse.NOT_SERVING)

    checkpointers: list[Checkpointer] = []

    def recovered(why: str) -> None:  # the store is back: save what was decided meanwhile
        for c in checkpointers:
            c.request(why)

    status = StoreStatus(engine, store.location, store_log, on_change=store_health)
    lease = WriterLease(store, store_log, on_lost=lost, engine=engine, status=status,
                        on_recovered=recovered)
    def journal_problem(error: str | None) -> None:
        if error is None:
            status.resolved("journal")
        else:
            status.problem("journal", f"the event journal cannot be written: {error}")

    events: EventWriter | None = None
    try:
        lease.claim(settings.storage.claim_wait_s)  # before reading: one server per store
        _restore(engine, store, masker, log)
        # the running policy's text beside the journals, and every one swapped in later
        engine.policy_keeper = policy_keeper(store)
        engine.policy_keeper(engine.policy)
        engine.journal = journal_writer(store, engine.clock_ms, blocked=lease.blocked)
        engine.feedback_journal = feedback_journal_writer(store, blocked=lease.blocked)
        engine.registry_journal = registry_journal_writer(store, blocked=lease.blocked)
        if settings.storage.journal_events:
            events = EventWriter(store, fsync=settings.storage.journal_fsync,
                                 interval_ms=settings.storage.journal_fsync_interval_ms,
                                 on_problem=journal_problem, unreachable=lease.blocked)
            events.start_at(engine.event_seq)
            engine.events = events
        checkpointer = Checkpointer(engine, store, settings.storage.checkpoint_interval_s,
                                    store_log, status=status)
        checkpointers.append(checkpointer)
        store_health(status.ok)
        running = _serve(settings, policy, masker, authenticator, engine, health_servicer, port,
                         log, store=store, checkpointer=checkpointer, lease=lease, tls=tls)
        running.events = events
        return running
    except BaseException:
        if events is not None:
            engine.events = None
            events.close()
        lease.release()  # whatever failed, the next start must not find the store claimed
        store.close()
        raise


def _set_health(servicer: health.HealthServicer, status: Any) -> None:
    """The same status for the server as a whole and for the Screening service."""
    for name in ("", SERVICE_NAME):
        servicer.set(name, status)


def _serve(settings: Settings, policy: Policy, masker: Masker, authenticator: Authenticator,
           engine: Engine, health_servicer: health.HealthServicer, port: int | None, log: Any, *,
           store: Store | None = None, checkpointer: Checkpointer | None = None,
           lease: WriterLease | None = None, tls: ServerTls | None = None) -> RunningServer:
    """Bind (with ``tls``, else plaintext), warm, start and report SERVING (the state is
    already restored)."""

    def denied(method: str, outcome: str, caller: Caller | None, peer: str) -> None:
        log.info("access_denied", method=method, outcome=outcome,
                 role=caller.role if caller else "", peer=peer)
        if audit is not None and outcome != "throttled":  # a blocked address: the log only
            audit.note("denied", caller or Caller("", ""), method.rsplit("/", 1)[-1],
                       engine.policy.version, outcome=outcome, peer=peer)

    opts = [
        ("grpc.max_receive_message_length", settings.server.max_message_bytes),
        ("grpc.max_send_message_length", settings.server.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    if settings.server.max_pending:
        opts += [("grpc.server.max_pending_requests", settings.server.max_pending),
                 ("grpc.server.max_pending_requests_hard_limit", settings.server.max_pending)]
    lanes = Lanes.from_settings(settings.server)
    metrics = Metrics(policy.version)
    if isinstance(store, TimedStore):
        store.observe = metrics.store_timed
    journal = engine.events if isinstance(engine.events, EventWriter) else None
    if journal is not None:
        journal.on_write, journal.on_sync = metrics.journal_written, metrics.journal_synced
    shadow = _shadow_recorder(settings, engine, metrics)
    refusals = RefusalLog(log, metrics=metrics)
    throttle = (FailureThrottle(settings.auth.max_failures, settings.auth.block_seconds)
                if authenticator.enabled and settings.auth.max_failures > 0 else None)
    server = grpc.server(
        lanes.control,  # health checks and refusals; every other call runs in its own lane
        interceptors=[AuthInterceptor(authenticator, denied, throttle),
                      AdmissionInterceptor(lanes, refusals)],
        options=opts,
        maximum_concurrent_rpcs=lanes.max_concurrent_rpcs(),
    )
    converter = Converter(settings, policy, engine.clock_ms, policy_for=engine.policy_for)
    service_log = get_logger("screening.service")
    audit = (AuditTrail(settings.audit, get_logger("screening.audit"))
             if settings.audit.dir else None)
    service = ScreeningService(engine, converter, authenticator, masker, service_log,
                               log_every_decision=settings.log.level.lower() == "debug",
                               metrics=metrics, audit=audit)
    add_screening_service(server, service, lanes, service_log, refusals, metrics)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, (SERVICE_NAME, health.SERVICE_NAME))
    bind_port = settings.server.port if port is None else port
    address = f"{settings.server.host}:{bind_port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, tls.credentials)
    except RuntimeError:  # grpcio raises where older versions returned 0
        bound = 0
    if bound == 0:
        raise ConfigError(f"cannot bind {settings.server.host}:{bind_port} (in use, or not an "
                          "address of this machine)")
    if audit is not None:  # opens the next file of the chain (ConfigError when it cannot)
        try:
            audit.start()
        except ConfigError:
            server.stop(None)
            raise
    # Warm every kernel before the port accepts traffic: no request pays for loading them.
    warm = engine.warm_up(progress=lambda step: log.info("warming", step=step))
    engine.on_evict = lambda ev: log.warning(
        "evicted", kind=ev.kind, count=ev.count, live=ev.live, cap=ev.cap,
        oldest_seen_ms=ev.oldest_seen_ms, newest_seen_ms=ev.newest_seen_ms,
        relationships=ev.relationships, edges=ev.edges, ms=round(ev.seconds * 1000, 1))
    # new entities' rows are written ahead of use, off the request path
    engine.start_prefill()
    # Long-lived objects out of the collector's way: removes the 20 ms full-collection pauses.
    gc.collect()
    gc.freeze()
    freezer = _GcFreezer()
    freezer.start()
    metrics.watch(lanes=lambda: {lane.name: (lane.held, lane.queued) for lane in lanes.all()},
                  engine=engine.stats,
                  checkpoint=(lambda: _checkpoint_figures(checkpointer)) if checkpointer else None,
                  audit=audit.stats if audit is not None else None,
                  journal_pending=(lambda: journal.pending) if journal is not None else None)
    metrics_port = 0
    if settings.metrics.port:
        try:
            metrics_port = metrics.serve(settings.metrics.host, settings.metrics.port)
        except OSError as exc:
            server.stop(None)
            if audit is not None:
                audit.close()
            raise ConfigError(f"[metrics] cannot serve on {settings.metrics.host}:"
                              f"{settings.metrics.port}: {exc.strerror or exc}") from None
    if tls is not None:
        _log_certificates(log, "tls", tls.current, mutual=tls.mutual,
                          callers="client certificates" if tls.mutual else "bearer tokens")
    try:
        flight = _start_flight(settings, service, log) if settings.flight.enabled else None
    except ConfigError:
        server.stop(None)
        engine.stop_prefill()
        freezer.stopped.set()
        metrics.close()
        if audit is not None:
            audit.close()
        raise
    server.start()
    if lease is None or not lease.lost:
        _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    if checkpointer is not None:
        checkpointer.start()
    log.info("serving", host=settings.server.host, port=bound, policy=policy.version,
             warm_ms=round(warm * 1000, 1), auth=authenticator.enabled,
             tls="mutual" if tls is not None and tls.mutual else "on" if tls is not None else "off",
             store=store.location if store is not None else "none",
             memory=engine.memory.log_fields(), metrics_port=metrics_port or None,
             shadows=[s.version for s in engine.shadows] or None,
             audit=settings.audit.dir or None)
    running = RunningServer(server, bound, engine, health_servicer, warm, freezer, store, checkpointer,
                            lease, lanes, metrics, metrics_port, service, shadow, authenticator, tls,
                            audit, flight=flight, flight_port=flight.port if flight else 0)
    service.read_shadows = running.read_shadows  # ReloadPolicy re-reads them, as SIGHUP does
    return running


def _start_flight(settings: Settings, service: ScreeningService, log: Any) -> Any:
    """The Arrow Flight endpoint on ``[flight] port`` (0: any free port), with the gRPC port's
    server certificate when it has one. ConfigError when pyarrow.flight is missing, under
    mutual TLS (not supported yet), or when the port cannot be bound."""
    if settings.tls.mutual:
        raise ConfigError("[flight] port: Arrow Flight under mutual TLS is not supported yet "
                          "(its callers would need to be named by their client certificates); "
                          "turn [flight] off (port = -1) or use bearer tokens with [tls] "
                          "cert_file and key_file only")
    try:
        from screening.flight import FlightEndpoint
    except ImportError as exc:
        raise ConfigError(f"[flight] port is set but pyarrow.flight cannot be imported ({exc}): "
                          "install the flight extra (pip install 'screening[flight]') or turn "
                          "[flight] off (port = -1)") from None
    host = settings.flight.host or settings.server.host
    cert = key = None
    if settings.tls.enabled:
        cert = Path(settings.tls.cert_file).read_bytes()
        key = Path(settings.tls.key_file).read_bytes()
    try:
        endpoint = FlightEndpoint(service, host, settings.flight.port,
                                  get_logger("screening.flight"), cert_pem=cert, key_pem=key)
    except OSError as exc:  # pyarrow raises its IOError subclass when it cannot bind
        raise ConfigError(f"[flight] cannot serve on {host}:{settings.flight.port}: {exc}") from None
    log.info("flight_serving", host=host, port=endpoint.port, scheme=endpoint.scheme,
             command=b"screen".decode())
    return endpoint


def _log_certificates(log: Any, event: str, certs: ServerCertificates, **fields: Any) -> None:
    for warning in certs.warnings:
        log.warning("tls_key_exposed", detail=warning)
    log.info(event, subject=certs.subject, not_after=certs.not_after.isoformat(), **fields)


def _shadow_recorder(settings: Settings, engine: Engine, metrics: Metrics) -> ShadowRecorder | None:
    """Load the shadow policies (a bad file stops start-up, naming its line) and hook them up."""
    paths = settings.policy.shadow_paths()
    if not paths:
        return None
    shadows = tuple(load_policy(p) for p in paths)
    log_path = Path(settings.policy.shadow_log) if settings.policy.shadow_log else None
    recorder = ShadowRecorder(shadows, engine.policy_for, log_path, metrics)
    engine.set_shadows(shadows)
    engine.on_shadow = recorder
    recorder.start()
    return recorder


def _checkpoint_figures(checkpointer: Checkpointer) -> dict[str, float] | None:
    last = checkpointer.last
    if last is None:
        return None
    return {"seconds": last.seconds, "lock_seconds": last.lock_s, "bytes": last.bytes,
            "timestamp_seconds": last.finished_at}


def serve_forever(running: RunningServer, grace: float) -> None:
    """Block until SIGTERM/SIGINT, then stop accepting, drain for ``grace`` s and exit; on
    SIGHUP re-read the policy and shadow policy files, the tokens file (or CRL) and the TLS
    certificates and swap them in (a file that does not load is logged and what is running
    stays). The tokens file
    or CRL is also re-read when it changes (looked at every RELOAD_POLL_S).

    When another server took the store (this one was cut off from it past its lease), stop the
    same way and raise StoreBusy saying so: answering on would split the state in two."""
    log = get_logger("screening.server")
    stop = threading.Event()
    reload = threading.Event()
    wake = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:  # reload, in the loop below (not in a handler)
            reload.set()
        else:
            log.info("stopping", signal=signal.Signals(signum).name, grace_s=grace)
            stop.set()
        wake.set()

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        previous[sig] = signal.signal(sig, on_signal)
    lease = running.lease
    auth = running.auth
    next_poll = time.monotonic() + RELOAD_POLL_S
    try:
        while not stop.is_set():
            wake.wait(0.5)
            wake.clear()
            if reload.is_set() and not stop.is_set():
                reload.clear()
                running.reload_policy("SIGHUP")
                running.reload_auth("SIGHUP")
                running.reload_tls("SIGHUP")
            elif auth is not None and time.monotonic() >= next_poll:
                next_poll = time.monotonic() + RELOAD_POLL_S
                if auth.changed():
                    running.reload_auth("file changed")
            if lease is not None and lease.lost:
                log.error("stopping", reason=lease.lost_reason, grace_s=grace)
                break
        t0 = time.perf_counter()
        running.stop(grace)
        log.info("stopped", drained_s=round(time.perf_counter() - t0, 3),
                 **running.engine.stats())
        if lease is not None and lease.lost:
            raise StoreBusy(f"{lease.lost_reason}; stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
