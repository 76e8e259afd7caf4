"""Where the service's own Python time goes: the servicer methods under cProfile, no gRPC.

``python -m bench._profile [--batches 40] [--unary 4000]`` builds the servicer exactly as
``start_server`` does (default policy, JSON logs at the default level written to a temporary
file), feeds it stamped transactions of the bench mix through ``ScreenBatch`` (1,000 per
message) and ``ScreenTransaction``, and prints wall time per transaction and the functions that
take it (cumulative time under each servicer call, as a share of the total). The gRPC transport
is not in these figures: the unary sweep's service/baseline ratio covers it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "profile_handlers"]

# (label, how the function appears in pstats: file suffix, line-insensitive function name)
_PARTS = (
    ("validate + convert request (Converter.transaction)", "convert.py", "transaction"),
    ("ScreenBatch: columns read from the bytes (screening.wire.read_batch)", "wire.py",
     "read_batch"),
    ("ScreenBatch: bulk checks (Converter.wire_columns)", "convert.py", "wire_columns"),
    ("ScreenBatch: columnar decode + validation, when the above doubt (Converter.batch_columns)",
     "convert.py", "batch_columns"),
    ("engine.screen (intern, encode, kernel, records)", "engine.py", "screen"),
    ("  of which fingerprints (idempotency)", "idempotency.py", "fingerprints"),
    ("  of which encoding into event rows (Screener.encode_transactions)", "core.py",
     "encode_transactions"),
    ("  of which the graph pass (edges, detectors)", "core.py", "_graph_pass"),
    ("  of which the Numba kernels (FeatureState.process)", "state.py", "process"),
    ("  of which decision records (Engine._records)", "engine.py", "_records"),
    ("decision log line (_log_decision)", "service.py", "_log_decision"),
    ("  of which masking ids (Masker.__call__, HMAC)", "masking.py", "__call__"),
    ("  of which structlog (filter, render, write)", "_native.py", "meth"),
    ("  of which Policy.fired (reason list)", "policy.py", "fired"),
    ("build Decision message (Converter.decision)", "convert.py", "decision"),
    ("ScreenBatch: classic reply (Converter.decision_batch)", "convert.py", "decision_batch"),
)


class _Context:
    """The little of grpc.ServicerContext the servicer touches on success."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


def _cumulative(stats: pstats.Stats, file_suffix: str, name: str) -> float:
    total = 0.0
    for (filename, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        if filename.endswith(file_suffix) and func == name:
            total += row[3]
    return float(total)


def profile_handlers(batches: int = 40, unary: int = 4_000) -> dict[str, Any]:
    """Profile ScreenBatch(1,000) x ``batches`` and ScreenTransaction x ``unary``."""
    from bench._mix import MixConfig, builtin_pool, stamp, stamp_batch
    from screening.auth import Authenticator
    from screening.config import load_settings
    from screening.convert import Converter
    from screening.engine import Engine
    from screening.logs import configure_logging, get_logger
    from screening.policy import load_policy
    from screening.service import ScreeningService
    from screening.v1 import screening_pb2 as pb
    from screening.wire import read_batch

    settings = load_settings(overrides={"state": {"initial_accounts": 262_144}})
    pool = builtin_pool(MixConfig(pool_size=50_000))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "service.log").open("w") as log:
        masker = configure_logging(settings.log, stream=log)
        policy = load_policy()
        engine = Engine(settings, policy)
        engine.warm_up()
        service = ScreeningService(engine, Converter(settings, policy, engine.clock_ms),
                                   Authenticator({}, enabled=False), masker,
                                   get_logger("screening.service"))
        ctx: Any = _Context()
        now = int(time.time() * 1000)
        row = 0
        cases: dict[str, tuple[list[Any], int]] = {}
        msgs = []
        for b in range(2 * batches):
            ids = [f"pb{b}-{i}" for i in range(1_000)]
            msgs.append(stamp_batch(pool.templates, row, ids, [now] * 1_000))
            row += 1_000
        cases["ScreenBatch"] = (msgs, 1_000)
        ids = [f"pu-{i}" for i in range(2 * unary)]
        cases["ScreenTransaction"] = (
            [pb.Transaction.FromString(m) for m in stamp(pool.templates, row, ids, [now] * 2 * unary)],
            1)
        def screen_batch(raw: bytes, ctx: Any) -> Any:  # as the gRPC handler reads it
            return service.ScreenBatch(read_batch(raw) or pb.TransactionBatch.FromString(raw), ctx)

        for method, (requests, per) in cases.items():
            handler = screen_batch if method == "ScreenBatch" else getattr(service, method)
            half = len(requests) // 2
            plain, requests = requests[:half], requests[half - 1:]
            handler(plain[0], ctx)  # first call outside any timing
            t0 = time.perf_counter()
            for req in plain[1:]:
                handler(req, ctx)
            plain_us = (time.perf_counter() - t0) / ((len(plain) - 1) * per) * 1e6
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            for req in requests[1:]:
                handler(req, ctx)
            prof.disable()
            wall = time.perf_counter() - t0
            n = (len(requests) - 1) * per
            stats = pstats.Stats(prof, stream=io.StringIO())
            total = _cumulative(stats, "service.py", method) or wall
            parts = {label: round(100 * _cumulative(stats, f, name) / total, 1)
                     for label, f, name in _PARTS}
            top = io.StringIO()
            pstats.Stats(prof, stream=top).sort_stats("tottime").print_stats(12)
            out[method] = {
                "transactions": n,
                "us_per_transaction": round(plain_us, 1),
                "us_per_transaction_profiled": round(total / n * 1e6, 1),
                "us_per_transaction_wall": round(wall / n * 1e6, 1),
                "share_of_handler_percent": parts,
                "top_by_own_time": top.getvalue(),
            }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._profile", description=__doc__)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--unary", type=int, default=4_000)
    parser.add_argument("--top", action="store_true", help="also print the top functions")
    args = parser.parse_args(argv)
    for method, r in profile_handlers(args.batches, args.unary).items():
        print(f"{method}: {r['us_per_transaction']} µs per transaction in the handler without a "
              f"profiler; {r['us_per_transaction_profiled']} µs under cProfile ({r['transactions']:,} "
              "transactions), shared out as (cProfile inflates many small calls):")
        for label, share in r["share_of_handler_percent"].items():
            print(f"  {share:5.1f} %  {label}")
        if args.top:
            print(r["top_by_own_time"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
