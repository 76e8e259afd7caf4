"""The baseline: a bare grpcio server that answers with bytes of the service's reply sizes.

Run in its own process (``python -m bench._echo --port 0 --reply unary=96 ...``); it prints
``PORT <n>`` on stdout once it serves. It is configured like the screening server (same thread
pool size and message limits) but does no work: it does not even parse the request, so its
latency is what gRPC and Python cost on this machine for the same message sizes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import grpc.aio

__all__ = ["ECHO_SERVICE", "echo_method", "main"]

ECHO_SERVICE = "bench.v1.Echo"
KINDS = ("unary", "stream", "batch100", "batch1000", "batch100c", "batch1000c")


def echo_method(kind: str) -> str:
    """Full method path of the echo twin of one request kind."""
    return f"/{ECHO_SERVICE}/{kind.capitalize()}"


def _handlers(replies: dict[str, bytes]) -> Any:
    def unary(reply: bytes) -> Any:
        def handle(_request: bytes, _context: grpc.ServicerContext) -> bytes:
            return reply

        return grpc.unary_unary_rpc_method_handler(handle)

    def stream(reply: bytes) -> Any:
        def handle(requests: Iterator[bytes], _context: grpc.ServicerContext) -> Iterator[bytes]:
            for _ in requests:
                yield reply

        return grpc.stream_stream_rpc_method_handler(handle)

    table = {k.capitalize(): (stream if k == "stream" else unary)(v) for k, v in replies.items()}
    return grpc.method_handlers_generic_handler(ECHO_SERVICE, table)


def _aio_handlers(replies: dict[str, bytes]) -> Any:
    """The same table for ``grpc.aio`` (coroutines on one event loop instead of a thread pool)."""

    def unary(reply: bytes) -> Any:
        async def handle(_request: bytes, _context: Any) -> bytes:
            return reply

        return grpc.unary_unary_rpc_method_handler(handle)

    def stream(reply: bytes) -> Any:
        async def handle(requests: Any, _context: Any) -> Any:
            async for _ in requests:
                yield reply

        return grpc.stream_stream_rpc_method_handler(handle)

    table = {k.capitalize(): (stream if k == "stream" else unary)(v) for k, v in replies.items()}
    return grpc.method_handlers_generic_handler(ECHO_SERVICE, table)


async def _serve_aio(replies: dict[str, bytes], port: int, options: list[tuple[str, int]]) -> None:
    import asyncio

    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((_aio_handlers(replies),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._echo", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-workers", type=int, default=8)
    parser.add_argument("--aio", action="store_true",
                        help="a grpc.aio server (one event loop) instead of the threaded one")
    parser.add_argument("--reply", action="append", default=[], metavar="KIND=BYTES",
                        help=f"reply size per request kind ({', '.join(KINDS)})")
    args = parser.parse_args(argv)
    sizes = dict.fromkeys(KINDS, 64)
    for item in args.reply:
        kind, _, size = item.partition("=")
        if kind not in sizes:
            parser.error(f"unknown kind {kind!r}")
        sizes[kind] = int(size)
    # Bytes that look like a protobuf (a field of the right length), not a zero run.
    replies = {k: bytes((i * 31 + 7) % 251 for i in range(n)) for k, n in sizes.items()}
    options = [("grpc.max_receive_message_length", 32 * 1024 * 1024),
               ("grpc.max_send_message_length", 32 * 1024 * 1024),
               ("grpc.so_reuseport", 0)]
    if args.aio:
        import asyncio

        asyncio.run(_serve_aio(replies, args.port, options))
        return 0
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.max_workers, thread_name_prefix="rpc"),
        options=options,
    )
    server.add_generic_rpc_handlers((_handlers(replies),))
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    print(f"PORT {port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop(0.5).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
