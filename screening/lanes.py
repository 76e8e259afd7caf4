"""Where each call runs, and how much the server takes on at once.

Each kind of call has a lane: a thread pool with a bound on the calls it holds (running plus
waiting). A call past its lane's bound is refused RESOURCE_EXHAUSTED at once, naming the
setting, on grpc's polling thread before it takes any thread (``AdmissionInterceptor``),
instead of waiting in an unbounded queue until long after its caller gave up. An open stream
holds a thread of the stream lane for as long as it is open, so streams never take threads
from unary callers or health checks.

    lane     calls                                           threads              waiting
    screen   ScreenTransaction, ScreenBatch, ReportCall      [server] max_workers [server] max_queue
    query    UpdateWatchlist, QueryAccount, ExportCaseGraph  4                    16
    stream   ScreenStream                                    [server] max_streams 0
    reflection  reflection (open to anyone, a stream each)   4                    0
    control  health checks, auth refusals (default pool)    4                    (overall cap)

Reflection has a lane of its own: it needs no token, and its streams in the stream lane let
anyone hold every ScreenStream slot (banks' streams were then refused RESOURCE_EXHAUSTED).

grpc's synchronous server runs a call on the pool its handler's behavior names in
``experimental_thread_pool`` (the hook grpc's own health service uses), else on its default pool.
It admits every call from its one polling thread, right before submitting it, so checking a
lane's room here and the submission that follows cannot interleave with another call's. The
overall cap (``max_concurrent_rpcs``, grpc's own check, answered on the polling thread) bounds
what refusals themselves can pile up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import grpc

from screening.config import ServerSettings
from screening.errors import CapacityExceeded, ScreeningError
from screening.metrics import Metrics

__all__ = ["AdmissionInterceptor", "Lane", "Lanes", "RefusalLog", "handler_like", "lane_of"]

P = ParamSpec("P")
T = TypeVar("T")

QUERY_WORKERS, QUERY_QUEUE = 4, 16
REFLECTION_WORKERS = 4
CONTROL_WORKERS = 4
# calls beyond every lane's bound that grpc still takes on (refusals, health checks) before it
# refuses on its polling thread
CONTROL_SLACK = 64


class Lane(futures.ThreadPoolExecutor):
    """A thread pool that counts the calls it holds (submitted, not finished)."""

    def __init__(self, name: str, workers: int, queue: int, full: str) -> None:
        super().__init__(max_workers=workers, thread_name_prefix=f"lane-{name}")
        self.name = name
        self.workers = workers
        self.capacity = workers + queue
        self._full = full
        self._held = 0
        self._count = threading.Lock()

    @property
    def held(self) -> int:
        """Calls running or waiting in this lane."""
        return self._held

    @property
    def queued(self) -> int:
        """Calls waiting for a thread of this lane (the queue's depth)."""
        return self._work_queue.qsize()

    def has_room(self) -> bool:
        return self._held < self.capacity

    def refusal(self) -> CapacityExceeded:
        return CapacityExceeded(self._full)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> futures.Future[T]:
        with self._count:
            self._held += 1
        try:
            fut = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._release()
            raise
        fut.add_done_callback(self._release)
        return fut

    def _release(self, _done: object = None) -> None:
        with self._count:
            self._held -= 1


@dataclass(frozen=True)
class Lanes:
    screen: Lane
    query: Lane
    stream: Lane
    control: Lane
    reflection: Lane

    @classmethod
    def from_settings(cls, s: ServerSettings) -> Lanes:
        return cls(
            screen=Lane("screen", s.max_workers, s.max_queue,
                        f"server busy: {s.max_workers} screening calls running and {s.max_queue} "
                        "waiting ([server] max_workers, max_queue); retry shortly"),
            query=Lane("query", QUERY_WORKERS, QUERY_QUEUE,
                       f"server busy: {QUERY_WORKERS} watchlist, query and export calls running "
                       f"and {QUERY_QUEUE} waiting; retry shortly"),
            stream=Lane("stream", s.max_streams, 0,
                        f"too many open streams: {s.max_streams} ([server] max_streams); close "
                        "one or use ScreenBatch"),
            control=Lane("control", CONTROL_WORKERS, 0, "server busy"),
            reflection=Lane("reflection", REFLECTION_WORKERS, 0,
                            f"too many open reflection streams: {REFLECTION_WORKERS}; close one"),
        )

    def all(self) -> tuple[Lane, ...]:
        return self.screen, self.query, self.stream, self.control, self.reflection

    def max_concurrent_rpcs(self) -> int:
        """grpc's overall cap: every lane full, plus room for refusals and health checks."""
        return (self.screen.capacity + self.query.capacity + self.stream.capacity
                + self.reflection.capacity + CONTROL_SLACK)

    def held(self) -> int:
        return sum(lane.held for lane in self.all())

    def shutdown_all(self) -> None:
        """Stop taking calls; calls still running (stuck on a client) are not waited for."""
        for lane in self.all():
            lane.shutdown(wait=False, cancel_futures=True)


def lane_of(handler: grpc.RpcMethodHandler[Any, Any]) -> Lane | None:
    """The lane a handler's behavior runs in, if it names one."""
    behavior = (handler.unary_unary or handler.unary_stream or handler.stream_unary
                or handler.stream_stream)
    pool = getattr(behavior, "experimental_thread_pool", None)
    return pool if isinstance(pool, Lane) else None


def handler_like(handler: grpc.RpcMethodHandler[Any, Any],
                 behavior: Callable[[Any, grpc.ServicerContext], Any]
                 ) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler answering like ``handler`` (one reply or a stream of them) that runs
    ``behavior`` without reading the request: a refusal need not wait for the request's bytes,
    and never decodes them. ``behavior`` gets an unread request iterator."""
    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(behavior, None, handler.response_serializer)
    return grpc.stream_unary_rpc_method_handler(behavior, None, handler.response_serializer)


class _Inline(futures.ThreadPoolExecutor):
    """Runs what grpc submits at once on the submitting thread (grpc's polling thread), for
    refusals only: they read nothing and only start sending a status, which never waits, so
    refusing costs no thread hand-off and no extra turn for the GIL under an overload."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)  # never starts its thread

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> futures.Future[T]:
        fut: futures.Future[T] = futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # grpc's own wrapper catches the behavior's errors
            fut.set_exception(exc)
        return fut


_INLINE = _Inline()


class RefusalLog:
    """Counts refusals and logs them at most once per ``period_s`` per (lane, reason): under an
    overload a log line per refusal would cost more than the refusal."""

    def __init__(self, log: Any, period_s: float = 1.0, metrics: Metrics | None = None) -> None:
        self.log = log
        self.period_s = period_s
        self.metrics = metrics
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._last: dict[tuple[str, str], float] = {}

    def note(self, lane: str, reason: str, detail: str) -> None:
        key = (lane, reason)
        if self.metrics is not None:
            self.metrics.refused(lane, reason)
        now = time.monotonic()
        with self._lock:
            n = self._counts.get(key, 0) + 1
            if now - self._last.get(key, -1e9) < self.period_s:
                self._counts[key] = n
                return
            self._counts[key] = 0
            self._last[key] = now
        self.log.warning("shedding", lane=lane, reason=reason, refused=n, detail=detail)


class AdmissionInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Refuses a call whose lane is full (RESOURCE_EXHAUSTED naming the setting); sends
    client-streaming calls that name no lane (reflection) to the reflection lane."""

    def __init__(self, lanes: Lanes, refusals: RefusalLog) -> None:
        self.lanes = lanes
        self.refusals = refusals
        self._moved: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        lane = lane_of(handler)
        if lane is None and handler.request_streaming:
            handler = self._in_stream_lane(handler_call_details.method, handler)
            lane = self.lanes.reflection
        if lane is None or lane.has_room():
            return handler
        error = lane.refusal()
        self.refusals.note(lane.name, "full", str(error))
        return handler_like(handler, _refuse(error))

    def _in_stream_lane(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
                        ) -> grpc.RpcMethodHandler[Any, Any]:
        moved = self._moved.get(method)
        if moved is None:
            inner = handler.stream_stream or handler.stream_unary
            assert inner is not None

            def run(request_iterator: Any, context: grpc.ServicerContext) -> Any:
                return inner(request_iterator, context)

            run.experimental_thread_pool = self.lanes.reflection  # type: ignore[attr-defined]
            maker = (grpc.stream_stream_rpc_method_handler if handler.response_streaming
                     else grpc.stream_unary_rpc_method_handler)
            moved = maker(run, handler.request_deserializer, handler.response_serializer)
            self._moved[method] = moved
        return moved


def _refuse(error: ScreeningError) -> Callable[[Any, grpc.ServicerContext], Any]:
    def refuse(_requests: Any, context: grpc.ServicerContext) -> Any:
        context.abort(error.code, str(error))

    refuse.experimental_thread_pool = _INLINE  # type: ignore[attr-defined]
    return refuse
