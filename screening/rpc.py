"""The Screening service's gRPC handlers, built from the service descriptor.

Every handler takes its request as raw bytes and decodes it itself, so decoding happens only
after the AuthInterceptor let the call through: an unauthenticated caller's bytes are never
parsed, and bytes that are not the method's message answer INVALID_ARGUMENT naming the request.
(grpc's own deserializer answered INTERNAL "Exception deserializing request!" before the token
was looked at, and on a stream then finished the call twice over, which left SIGTERM waiting
for it forever.) Each handler runs in its method's lane (``screening.lanes``).

A caller that got here has a valid token (``screening.auth``): the failed-token throttle blocks
an address's wrong tokens, not the valid callers behind the same address. After decoding, a
unary call whose deadline leaves less time than the method is expected to take
(``ServiceTime``) is refused DEADLINE_EXCEEDED before it touches any state, instead of being
answered after its caller gave up.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message

from screening.errors import DeadlineUnmeetable, InvalidRequest, ScreeningError
from screening.lanes import Lane, Lanes, RefusalLog
from screening.metrics import Metrics
from screening.v1 import screening_pb2 as pb
from screening.wire import WireBatch, read_batch

__all__ = ["LANE_OF", "SERVICE", "ServiceTime", "add_screening_service"]

SERVICE = pb.DESCRIPTOR.services_by_name["Screening"]
# The lane of each method (screening.lanes); a method missing here stops the server's start.
LANE_OF = {
    "ScreenTransaction": "screen",
    "ScreenBatch": "screen",
    "ReportCall": "screen",
    "ScreenStream": "stream",
    "UpdateWatchlist": "query",
    "QueryAccount": "query",
    "ExportCaseGraph": "query",
    # feedback and the registry change state like a watchlist update; a report reads a day
    "SubmitFeedback": "query",
    "UpsertAccounts": "query",
    "GetLargeValueReport": "query",
    "ReloadPolicy": "query",
}


class ServiceTime:
    """Running estimate of a method's wall time per item (per transaction of a batch, else per
    call), for the deadline check; one per method and batch size class.

    An exponentially weighted mean of measured calls that, while nothing is measured, relaxes
    toward zero (halving every ``half_life_s``): refused calls are not measured, so without the
    relaxation one slow spell could keep refusing calls after the load that caused it is gone.
    It never relaxes below the fastest cost per item measured, itself halving only every
    ``floor_half_lives`` half-lives: after a pause the first large batch is still refused when
    its deadline is shorter than what such a batch has ever taken here (it was accepted and
    answered after its caller gave up), and a floor set by one slow first call fades in seconds.
    Updated without a lock: a lost update under a race only delays the estimate by a call.
    """

    def __init__(self, half_life_s: float = 1.0, weight: float = 0.2,
                 floor_half_lives: float = 30.0) -> None:
        self.half_life_s = half_life_s
        self.weight = weight
        self.floor_half_life_s = half_life_s * floor_half_lives
        self._per_item = 0.0
        self._floor = 0.0
        self._at = time.monotonic()

    def _now(self, now: float | None) -> tuple[float, float]:
        """(mean, floor) per item at ``now``, each relaxed for the time nothing was measured."""
        now = time.monotonic() if now is None else now
        age = max(0.0, now - self._at)
        return (self._per_item * 0.5 ** (age / self.half_life_s),
                self._floor * 0.5 ** (age / self.floor_half_life_s))

    def expected(self, items: int = 1, now: float | None = None) -> float:
        """Seconds a call of ``items`` items is expected to take now."""
        mean, floor = self._now(now)
        return float(max(mean, floor) * items)

    def update(self, seconds: float, items: int = 1) -> ServiceTime:
        now = time.monotonic()
        current, floor = self._now(now)
        sample = seconds / max(1, items)
        self._per_item = sample if current <= 0 else current + self.weight * (sample - current)
        self._floor = sample if floor <= 0 else min(floor, sample)
        self._at = now
        return self


def add_screening_service(server: grpc.Server, servicer: Any, lanes: Lanes, log: Any,
                          refusals: RefusalLog, metrics: Metrics | None = None) -> None:
    """Register ``servicer``'s methods (a ScreeningServicer) on ``server``, each in its lane."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in SERVICE.methods:
        lane: Lane = getattr(lanes, LANE_OF[method.name])
        request_cls = getattr(pb, method.input_type.name)
        response_cls = getattr(pb, method.output_type.name)
        impl = getattr(servicer, method.name)
        gate = _Gate(method, request_cls, log, refusals, lane.name, metrics,
                     functools.partial(read_batch, max_rows=servicer.conv.limits.max_batch)
                     if method.name == "ScreenBatch" else None)
        behavior: Callable[..., Any]
        if method.client_streaming and method.server_streaming:
            behavior = gate.stream(impl)
            handler = grpc.stream_stream_rpc_method_handler(
                behavior, None, response_cls.SerializeToString)
        elif not method.client_streaming and not method.server_streaming:
            behavior = gate.unary(impl)
            handler = grpc.unary_unary_rpc_method_handler(
                behavior, None, response_cls.SerializeToString)
        else:  # pragma: no cover - the contract has no such method today
            raise TypeError(f"{method.full_name}: no handler for this kind of method")
        behavior.experimental_thread_pool = lane  # type: ignore[union-attr]
        handlers[method.name] = handler
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    # as the generated add_*_to_server does (grpc-stubs does not know the method yet)
    server.add_registered_method_handlers(SERVICE.full_name, handlers)  # type: ignore[attr-defined]


def _items(request: Message | WireBatch) -> int:
    """Transactions in a batch; 1 for any other request."""
    if isinstance(request, WireBatch):
        return max(1, len(request))
    if isinstance(request, pb.TransactionBatch):
        return max(1, len(request.transactions))
    return 1


class _Gate:
    """What every call of one method passes before the servicer sees it."""

    def __init__(self, method: MethodDescriptor, request_cls: type[Message], log: Any,
                 refusals: RefusalLog, lane: str, metrics: Metrics | None = None,
                 reader: Callable[[bytes], WireBatch | None] | None = None) -> None:
        self.name = method.name
        # reads the request's columns from its bytes (ScreenBatch); None: it doubts, or none
        self.reader = reader
        self.metrics = metrics
        self.request_cls = request_cls
        self.log = log
        self.refusals = refusals
        self.lane = lane
        # by batch size (bit length of the item count): a small batch costs more per item
        self.service_time: dict[int, ServiceTime] = {}

    def _estimate(self, items: int) -> ServiceTime:
        size = items.bit_length()
        est = self.service_time.get(size)
        if est is None:
            est = self.service_time.setdefault(size, ServiceTime())
        return est

    def _decode(self, raw: bytes, where: str) -> Message | WireBatch:
        if self.reader is not None:
            read = self.reader(raw)
            if read is not None:
                return read
        return self._parse(raw, where)

    def _parse(self, raw: bytes, where: str) -> Message:
        try:
            return self.request_cls.FromString(raw)
        except DecodeError:
            raise InvalidRequest(where, f"cannot be decoded as {self.request_cls.DESCRIPTOR.full_name} "
                                        "(not a protobuf message of that type)") from None

    def _abort(self, context: grpc.ServicerContext, exc: ScreeningError) -> None:
        if isinstance(exc, DeadlineUnmeetable):
            self.refusals.note(self.lane, "deadline", str(exc))
        else:
            self.log.info("rejected", rpc=self.name, code=exc.code.name, detail=str(exc))
            if self.metrics is not None:
                self.metrics.failed(self.name, exc.code.name)
        context.abort(exc.code, str(exc))

    def unary(self, impl: Callable[[Any, grpc.ServicerContext], Any]
              ) -> Callable[[bytes, grpc.ServicerContext], Any]:
        def behavior(raw: bytes, context: grpc.ServicerContext) -> Any:
            try:
                request = self._decode(raw, "request")
                items = _items(request)
                estimate = self._estimate(items)
                left = context.time_remaining()
                expected = estimate.expected(items)
                if left < expected:
                    raise DeadlineUnmeetable(
                        f"deadline too short: {left * 1000:.0f} ms left, {self.name} of "
                        f"{items} item(s) takes about {expected * 1000:.0f} ms here now; "
                        "retry with a longer deadline or later")
            except ScreeningError as exc:
                self._abort(context, exc)
                raise AssertionError("unreachable") from exc  # pragma: no cover - abort raises
            t0 = time.perf_counter()
            try:
                return impl(request, context)
            finally:
                took = time.perf_counter() - t0
                estimate.update(took, items)
                if self.metrics is not None:
                    self.metrics.observe(self.name, took)

        return behavior

    def stream(self, impl: Callable[[Iterator[Message], grpc.ServicerContext], Any]
               ) -> Callable[[Iterator[bytes], grpc.ServicerContext], Any]:
        def behavior(raws: Iterator[bytes], context: grpc.ServicerContext) -> Any:

            def decoded() -> Iterator[Message]:
                for n, raw in enumerate(raws):
                    yield self._parse(raw, f"message {n}")

            return impl(decoded(), context)

        return behavior
