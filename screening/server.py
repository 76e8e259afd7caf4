"""Server start-up and shutdown: restore state, warm kernels, then health SERVING; drain on
SIGTERM, then a last checkpoint."""

from __future__ import annotations

import gc
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from screening.auth import Authenticator, AuthInterceptor
from screening.config import Settings
from screening.convert import Converter
from screening.engine import Engine
from screening.errors import ConfigError
from screening.logs import get_logger
from screening.masking import Masker
from screening.policy import Policy, load_policy
from screening.service import ScreeningService
from screening.store import (
    Checkpointer,
    Store,
    WriterLease,
    feedback_journal_writer,
    journal_writer,
    open_store,
    restore_engine,
)
from screening.v1 import screening_pb2 as pb
from screening.v1 import screening_pb2_grpc as pb_grpc

__all__ = ["SERVICE_NAME", "RunningServer", "serve_forever", "start_server"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Screening"].full_name


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

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, drain in-flight calls for ``grace`` s, then write a last checkpoint."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.gc_freezer is not None:
            self.gc_freezer.stopped.set()
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer.checkpoint("shutdown")
            self.checkpointer = None
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        if self.store is not None:
            self.store.close()
            self.store = None


def _authenticator(settings: Settings, auth: Authenticator | None) -> Authenticator:
    if auth is not None:
        return auth
    if not settings.auth.enabled:
        return Authenticator({}, enabled=False)
    if not settings.auth.tokens_file:
        raise ConfigError(
            "no tokens configured: set [auth] tokens_file (create tokens with "
            "`screening token create --role bank --file tokens.toml`), or pass --no-auth for a "
            "local development server")
    return Authenticator.from_file(Path(settings.auth.tokens_file))


def _restore(engine: Engine, store: Store, masker: Masker, log: Any) -> None:
    """Load the latest checkpoint and newer watchlist changes; log what came back (masked)."""
    report = restore_engine(engine, store)
    h = report.header
    for note in report.notes:
        log.warning("restore_note", note=note)
    if h is None:
        log.info("no_checkpoint", store=store.location, journal_applied=report.journal_applied)
    else:
        log.info("state_restored", store=store.location, where=h.where, bytes=h.size,
                 format=h.format, policy=h.policy_version,
                 age_s=round((engine.clock_ms() - h.created_ms) / 1000, 1),
                 seconds=round(report.seconds, 3), journal_applied=report.journal_applied,
                 **h.counts)
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
    policy = policy or load_policy(settings.policy.file)
    masker = masker or Masker()
    authenticator = _authenticator(settings, auth)
    if not authenticator.enabled:
        log.warning("auth_disabled", detail="every caller is admin; development only")
    engine = engine or Engine(settings, policy)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    store = store or open_store(settings.storage)
    if store is None:
        return _serve(settings, policy, masker, authenticator, engine, health_servicer, port, log)

    def lost() -> None:  # another server owns the store now: send the traffic there
        _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)

    lease = WriterLease(store, get_logger("screening.store"), on_lost=lost)
    try:
        lease.claim(settings.storage.claim_wait_s)  # before reading: one server per store
        _restore(engine, store, masker, log)
        engine.journal = journal_writer(store, engine.clock_ms)
        engine.feedback_journal = feedback_journal_writer(store)
        checkpointer = Checkpointer(engine, store, settings.storage.checkpoint_interval_s,
                                    get_logger("screening.store"))
        return _serve(settings, policy, masker, authenticator, engine, health_servicer, port, log,
                      store=store, checkpointer=checkpointer, lease=lease)
    except BaseException:
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
           lease: WriterLease | None = None) -> RunningServer:
    """Bind, warm, start and report SERVING (the state is already restored)."""

    def denied(method: str, outcome: str, role: str) -> None:
        log.info("access_denied", method=method, outcome=outcome, role=role)

    opts = [
        ("grpc.max_receive_message_length", settings.server.max_message_bytes),
        ("grpc.max_send_message_length", settings.server.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.server.max_workers,
                                   thread_name_prefix="rpc"),
        interceptors=[AuthInterceptor(authenticator, denied)],
        options=opts,
    )
    converter = Converter(settings, policy, engine.clock_ms)
    pb_grpc.add_ScreeningServicer_to_server(
        ScreeningService(engine, converter, authenticator, masker,
                         get_logger("screening.service"),
                         log_every_decision=settings.log.level.lower() == "debug"), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bind_port = settings.server.port if port is None else port
    try:
        bound = server.add_insecure_port(f"{settings.server.host}:{bind_port}")
    except RuntimeError:  # grpcio raises where older versions returned 0
        bound = 0
    if bound == 0:
        raise ConfigError(f"cannot bind {settings.server.host}:{bind_port} (in use, or not an "
                          "address of this machine)")
    # Warm every kernel before the port accepts traffic: no request pays for loading them.
    warm = engine.warm_up()
    # Long-lived objects out of the collector's way: removes the 20 ms full-collection pauses.
    gc.collect()
    gc.freeze()
    freezer = _GcFreezer()
    freezer.start()
    server.start()
    if lease is None or not lease.lost:
        _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    if checkpointer is not None:
        checkpointer.start()
    log.info("serving", host=settings.server.host, port=bound, policy=policy.version,
             warm_ms=round(warm * 1000, 1), auth=authenticator.enabled,
             store=store.location if store is not None else "none")
    return RunningServer(server, bound, engine, health_servicer, warm, freezer, store, checkpointer,
                         lease)


def serve_forever(running: RunningServer, grace: float) -> None:
    """Block until SIGTERM/SIGINT, then stop accepting, drain for ``grace`` s and exit."""
    log = get_logger("screening.server")
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name, grace_s=grace)
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        while not stop.wait(0.5):
            pass
        t0 = time.perf_counter()
        running.stop(grace)
        log.info("stopped", drained_s=round(time.perf_counter() - t0, 3),
                 **running.engine.stats())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
