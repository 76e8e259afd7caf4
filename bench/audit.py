"""What the audit trail costs per decision: audit on against audit off, in the same run.

    python -m bench.audit [--unary 6000] [--batches 12] [--block 250] [--out bench/results/audit.json]

Builds two servicers as ``start_server`` does (default policy, JSON logs at the default level
to a temporary file, no gRPC), one with ``[audit] dir`` set (default settings: batches every
200 ms, each fsync'd) and one without, and feeds both the same stamped transactions of the
bench mix: ``ScreenTransaction`` in alternating blocks of ``--block`` calls (which servicer
goes first alternates too), then ``ScreenBatch`` of 1,000 the same way. Figures, per decision:

- the request path: thread CPU of the handler with the trail minus without (median over block
  pairs; an A/A pair of two servicers without the trail is run beside it as the noise floor),
  and the enqueue alone (``admit`` + ``add`` of the decision tuple, timed in a loop);
- the writer thread: its own CPU time (``pthread_getcpuclockid``) over the records it wrote
  (building, chaining, writing, fsyncing), which competes for the same GIL and cores;
- both as a ratio to the handler's CPU per decision without the trail (the request path counted
  as the A/B difference, or the enqueue alone when that is more: the difference is often below
  the A/A noise).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._inproc import Context, publish, stamp, thread_cpu_s

__all__ = ["main", "measure"]


def _servicer(settings: Any, log_stream: Any, audit_dir: Path | None, fsync: str = "batch"
              ) -> Any:
    from screening.audit import AuditTrail
    from screening.auth import Authenticator
    from screening.convert import Converter
    from screening.engine import Engine
    from screening.logs import get_logger
    from screening.masking import Masker
    from screening.policy import load_policy
    from screening.service import ScreeningService

    policy = load_policy()
    engine = Engine(settings, policy)
    engine.warm_up()
    trail = None
    if audit_dir is not None:
        from screening.config import AuditSettings

        trail = AuditTrail(AuditSettings(dir=str(audit_dir), fsync=fsync),
                           get_logger("screening.audit"))
        trail.start()
    return ScreeningService(engine, Converter(settings, policy, engine.clock_ms),
                            Authenticator({}, enabled=False), Masker(),
                            get_logger("screening.service"), audit=trail)


def _ab(handlers: Sequence[Any], requests: Sequence[Any], block: int, per: int
        ) -> tuple[list[float], list[float]]:
    """Thread CPU ns per decision of each handler, block by block (order alternating)."""
    ctx: Any = Context()
    spent: list[list[float]] = [[] for _ in handlers]
    for b, lo in enumerate(range(0, len(requests) - block + 1, block)):
        chunk = requests[lo:lo + block]
        order = list(range(len(handlers)))
        if b % 2:
            order.reverse()
        for which in order:
            handler = handlers[which]
            c0 = time.thread_time_ns()
            for req in chunk:
                handler(req, ctx)
            spent[which].append((time.thread_time_ns() - c0) / (block * per))
        gc.collect(1)
        gc.freeze()
    return spent[0], spent[1]


def _median_diff(a: Sequence[float], b: Sequence[float]) -> float:
    skip = max(1, len(a) // 10)  # the first blocks warm caches and grow arrays
    return statistics.median(x - y for x, y in zip(a[skip:], b[skip:], strict=True))


def measure(unary: int = 6_000, batches: int = 12, block: int = 250, fsync: str = "batch"
            ) -> dict[str, Any]:
    from bench._mix import MixConfig, builtin_pool, stamp, stamp_batch
    from screening.audit import DECISION, AuditTrail, read_records
    from screening.auth import Caller
    from screening.config import AuditSettings, load_settings
    from screening.logs import configure_logging
    from screening.v1 import screening_pb2 as pb

    settings = load_settings(overrides={"state": {"initial_accounts": 262_144},
                                        "server": {"latency_budget_ms": 1e9}})
    pool = builtin_pool(MixConfig(pool_size=50_000))
    now = int(time.time() * 1000)
    out: dict[str, Any] = {"settings": f"[audit] defaults (flush_interval_ms 200, batch_max "
                                       f"4096), fsync {fsync}", "block": block}
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "service.log").open("w") as log:
        configure_logging(settings.log, stream=log)
        audit_dir = Path(tmp) / "audit"
        on = _servicer(settings, log, audit_dir, fsync)
        off = _servicer(settings, log, None)
        off2 = _servicer(settings, log, None)
        trail = on.audit
        unary_msgs = [pb.Transaction.FromString(m) for m in stamp(
            pool.templates, 0, [f"au-{i}" for i in range(unary)], [now] * unary)]
        batch_msgs = [pb.TransactionBatch.FromString(stamp_batch(
            pool.templates, unary + b * 1_000, [f"ab{b}-{i}" for i in range(1_000)],
            [now] * 1_000)) for b in range(batches)]
        gc.collect()
        gc.freeze()
        writer0 = thread_cpu_s(trail._thread)
        with_, without = _ab([on.ScreenTransaction, off.ScreenTransaction], unary_msgs, block, 1)
        assert trail.flush(60)
        writer_unary = thread_cpu_s(trail._thread) - writer0
        written_unary = trail.written
        # the noise floor: the same A/B between two servicers without the trail
        aa_msgs = [pb.Transaction.FromString(m) for m in stamp(
            pool.templates, 0, [f"aa-{i}" for i in range(unary)], [now] * unary)]
        a1, a2 = _ab([off2.ScreenTransaction, off.ScreenTransaction], aa_msgs, block, 1)
        writer1 = thread_cpu_s(trail._thread)
        bwith, bwithout = _ab([on.ScreenBatch, off.ScreenBatch], batch_msgs, 1, 1_000)
        assert trail.flush(60)
        writer_batch = thread_cpu_s(trail._thread) - writer1
        written_batch = trail.written - written_unary
        trail.close()
        # the enqueue alone, as the handler does it (a trail whose writer never starts; the
        # queue is emptied every 1,000, as the writer takes it every flush)
        idle = AuditTrail(AuditSettings(dir=str(Path(tmp) / "idle")), None)
        caller = Caller("bench", "bank", "BANK01")
        t, rec, reasons = object(), object(), ["RULE"]
        enqueue_total = 0
        for _ in range(200):
            c0 = time.thread_time_ns()
            for _ in range(1_000):
                idle.admit()
                idle.add((DECISION, time.time_ns(), caller, "ScreenTransaction", t, rec, False,
                          reasons))
            enqueue_total += time.thread_time_ns() - c0
            idle._pending.clear()
        enqueue_ns = enqueue_total / 200_000
        bytes_written = sum(p.stat().st_size for p in audit_dir.iterdir())
        records = sum(1 for r in read_records(audit_dir) if r["kind"] == DECISION)
    base_unary = statistics.median(without)
    base_batch = statistics.median(bwithout)
    added_unary = _median_diff(with_, without)
    added_batch = _median_diff(bwith, bwithout)
    writer_unary_ns = writer_unary * 1e9 / max(written_unary, 1)
    writer_batch_ns = writer_batch * 1e9 / max(written_batch, 1)
    # the request path in the ratio: the A/B difference, but never less than the enqueue timed
    # alone (the A/B difference is often below its own A/A noise)
    path_unary, path_batch = max(added_unary, enqueue_ns), max(added_batch, enqueue_ns)
    out.update({
        "decisions_recorded": records,
        "bytes_per_record": round(bytes_written / max(records, 1), 1),
        "unary": {
            "decisions": unary,
            "handler_cpu_ns_without_median": round(base_unary),
            "request_path_added_cpu_ns_median": round(added_unary),
            "aa_noise_cpu_ns_median": round(_median_diff(a1, a2)),
            "writer_cpu_ns_per_record": round(writer_unary_ns),
            "total_added_cpu_ns": round(path_unary + writer_unary_ns),
            "ratio_with_to_without": round((base_unary + path_unary + writer_unary_ns)
                                           / base_unary, 3),
        },
        "batch1000": {
            "decisions": batches * 1_000,
            "handler_cpu_ns_without_median": round(base_batch),
            "request_path_added_cpu_ns_median": round(added_batch),
            "writer_cpu_ns_per_record": round(writer_batch_ns),
            "total_added_cpu_ns": round(path_batch + writer_batch_ns),
            "ratio_with_to_without": round((base_batch + path_batch + writer_batch_ns)
                                           / base_batch, 3),
        },
        "enqueue_cpu_ns": round(enqueue_ns, 1),
    })
    return out


def lines(r: dict[str, Any]) -> list[str]:
    """The figures in words (the suite prints these too)."""
    u, b = r["unary"], r["batch1000"]
    return [
        f"unary: handler {u['handler_cpu_ns_without_median'] / 1000:.1f} µs CPU per decision "
        f"without the trail; the trail adds {u['request_path_added_cpu_ns_median'] / 1000:.2f} µs "
        f"on the request path (A/A noise {u['aa_noise_cpu_ns_median'] / 1000:.2f} µs) and "
        f"{u['writer_cpu_ns_per_record'] / 1000:.2f} µs in the writer thread: ratio "
        f"{u['ratio_with_to_without']:.3f}",
        f"batch of 1,000: handler {b['handler_cpu_ns_without_median'] / 1000:.1f} µs per "
        f"decision; +{b['request_path_added_cpu_ns_median'] / 1000:.2f} µs request path, "
        f"+{b['writer_cpu_ns_per_record'] / 1000:.2f} µs writer: ratio "
        f"{b['ratio_with_to_without']:.3f}",
        f"enqueue alone (admit + add): {r['enqueue_cpu_ns']:.0f} ns; "
        f"{r['bytes_per_record']:.0f} bytes per decision record",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unary", type=int, default=6_000, help="ScreenTransaction calls per servicer")
    ap.add_argument("--batches", type=int, default=12, help="ScreenBatch(1,000) calls")
    ap.add_argument("--block", type=int, default=250, help="calls per A/B block")
    ap.add_argument("--fsync", choices=("batch", "rotate"), default="batch",
                    help="[audit] fsync of the audited servicer (default batch)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = ap.parse_args(argv)
    r = stamp(measure(args.unary, args.batches, args.block, args.fsync))
    publish(r, [json.dumps(r)] if args.json else lines(r), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
