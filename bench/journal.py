"""What the event journal costs per decision: journal on against off, in the same run.

    python -m bench.journal [--unary 4000] [--batches 12] [--block 250] [--threads 8] [--dir DIR]
                            [--out bench/results/journal.json]

Builds servicers as ``start_server`` does (default policy, no gRPC): one without the journal,
one with a file store's journal fsync'd after every batch (``journal_fsync = "batch"``, the
default) and one with ``journal_fsync = "none"`` (written, not fsync'd: survives a killed
process, not a machine crash), each on its own directory under ``--dir`` (default: a temporary
directory; give one on the disk the service would use). All get the same stamped transactions of
the bench mix, ``ScreenTransaction`` one at a time from one thread in alternating blocks, then
``ScreenBatch`` of 1,000; then ``--threads`` concurrent clients of ``ScreenTransaction``
without the journal and with it (fsync per write): calls per second and calls per write (the
group commit); then a restart with no checkpoint, re-applying the journal. Per decision:

- the handler's thread CPU (the encode and the queue append under the lock; the wait for the
  write is not CPU) minus that without the journal (median over blocks);
- the writer thread's CPU (``pthread_getcpuclockid``: encoding the entries, writing, fsync)
  over the decisions it wrote;
- the wall time per call, which for one sequential client includes waiting for its own write
  and fsync (concurrent clients share one: group commit).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._inproc import Context, publish, stamp, thread_cpu_s

__all__ = ["main", "measure"]


def _servicer(settings: Any, directory: Path | None, fsync: str) -> tuple[Any, Any]:
    from screening.auth import Authenticator
    from screening.convert import Converter
    from screening.engine import Engine
    from screening.logs import get_logger
    from screening.masking import Masker
    from screening.policy import load_policy
    from screening.service import ScreeningService
    from screening.store import EventWriter, FileStore

    policy = load_policy()
    engine = Engine(settings, policy)
    engine.warm_up()
    writer = None
    if directory is not None:
        writer = EventWriter(FileStore(directory), fsync=fsync)
        engine.events = writer
    return ScreeningService(engine, Converter(settings, policy, engine.clock_ms),
                            Authenticator({}, enabled=False), Masker(),
                            get_logger("screening.service")), writer


def _run(handlers: Sequence[Any], requests: Sequence[Any], block: int, per: int
         ) -> tuple[list[list[float]], list[list[float]]]:
    """Thread CPU and wall ns per decision of each handler, block by block (order rotating)."""
    ctx: Any = Context()
    cpu: list[list[float]] = [[] for _ in handlers]
    wall: list[list[float]] = [[] for _ in handlers]
    for b, lo in enumerate(range(0, len(requests) - block + 1, block)):
        chunk = requests[lo:lo + block]
        n = len(handlers)
        for k in range(n):
            which = (b + k) % n
            handler = handlers[which]
            c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            for req in chunk:
                handler(req, ctx)
            cpu[which].append((time.thread_time_ns() - c0) / (block * per))
            wall[which].append((time.perf_counter_ns() - w0) / (block * per))
        gc.collect(1)
        gc.freeze()
    return cpu, wall


def _concurrent(handler: Any, msgs: Sequence[Any], threads: int, writer: Any) -> dict[str, Any]:
    """``threads`` clients calling ``handler`` at once over ``msgs``: calls/s, calls per write."""
    ctx: Any = Context()
    before = writer.batches if writer is not None else 0
    share = [msgs[k::threads] for k in range(threads)]

    def run(part: Sequence[Any]) -> None:
        for m in part:
            handler(m, ctx)

    pool = [threading.Thread(target=run, args=(part,)) for part in share]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"calls_per_s": round(len(msgs) / seconds)}
    if writer is not None:
        out["calls_per_write"] = round(len(msgs) / max(writer.batches - before, 1), 2)
    return out


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs[max(1, len(xs) // 10):])  # the first blocks warm caches


def measure(unary: int = 4_000, batches: int = 12, block: int = 250,
            directory: Path | None = None, threads: int = 8) -> dict[str, Any]:
    from bench._mix import MixConfig, builtin_pool, stamp, stamp_batch
    from screening.config import load_settings
    from screening.logs import configure_logging
    from screening.v1 import screening_pb2 as pb

    settings = load_settings(overrides={"state": {"initial_accounts": 262_144},
                                        "server": {"latency_budget_ms": 1e9}})
    pool = builtin_pool(MixConfig(pool_size=50_000))
    now = int(time.time() * 1000)
    names = ["off", "fsync_batch", "fsync_none"]
    if directory is not None:  # the disk to measure fsync on; made when missing
        directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as tmp, \
            (Path(tmp) / "service.log").open("w") as log:
        configure_logging(settings.log, stream=log)
        built = [_servicer(settings, None, "batch"),
                 _servicer(settings, Path(tmp) / "batch", "batch"),
                 _servicer(settings, Path(tmp) / "none", "none")]
        writers = [w for _, w in built]
        unary_msgs = [pb.Transaction.FromString(m) for m in stamp(
            pool.templates, 0, [f"ju-{i}" for i in range(unary)], [now] * unary)]
        batch_msgs = [pb.TransactionBatch.FromString(stamp_batch(
            pool.templates, unary + b * 1_000, [f"jb{b}-{i}" for i in range(1_000)],
            [now] * 1_000)) for b in range(batches)]
        gc.collect()
        gc.freeze()
        w0 = [thread_cpu_s(w._thread) if w else 0.0 for w in writers]
        ucpu, uwall = _run([s.ScreenTransaction for s, _ in built], unary_msgs, block, 1)
        w1 = [thread_cpu_s(w._thread) if w else 0.0 for w in writers]
        bcpu, bwall = _run([s.ScreenBatch for s, _ in built], batch_msgs, 1, 1_000)
        w2 = [thread_cpu_s(w._thread) if w else 0.0 for w in writers]
        batches_written = [w.batches if w else 0 for w in writers]
        # concurrent clients: calls per second off and with fsync per write, calls per write
        conc: dict[str, Any] = {"threads": threads}
        for i, name in ((0, "off"), (1, "fsync_batch")):
            msgs = [pb.Transaction.FromString(m) for m in stamp(
                pool.templates, 0, [f"jc{i}-{k}" for k in range(unary)], [now] * unary)]
            conc[name] = _concurrent(built[i][0].ScreenTransaction, msgs, threads, writers[i])
        for w in writers:
            if w is not None:
                w.close()
        # a restart with no checkpoint: every journalled decision re-applied
        from screening.engine import Engine
        from screening.policy import load_policy
        from screening.store import FileStore, restore_engine

        fresh = Engine(settings, load_policy())
        with FileStore(Path(tmp) / "none") as store:
            t0 = time.perf_counter()
            report = restore_engine(fresh, store)
            restore_s = time.perf_counter() - t0
        replayed = len(fresh.decisions)
        sizes = {name: sum(p.stat().st_size for p in (Path(tmp) / name.removeprefix("fsync_"))
                           .glob("events.*.journal")) for name in names[1:]}
    out: dict[str, Any] = {"block": block, "unary": {}, "batch1000": {},
                           # the fsync_none journal holds exactly the A/B decisions
                           "journal_bytes_per_decision": round(
                               sizes["fsync_none"] / (unary + batches * 1_000), 1),
                           "writes": dict(zip(names, batches_written, strict=True)),
                           "concurrent_unary": conc,
                           "restore": {"events": report.events_applied, "decisions": replayed,
                                       "seconds": round(restore_s, 3),
                                       "us_per_decision": round(restore_s * 1e6 / max(replayed, 1),
                                                                1)}}
    for label, cpu, wall, n, wa, wb in (("unary", ucpu, uwall, unary, w0, w1),
                                        ("batch1000", bcpu, bwall, batches * 1_000, w1, w2)):
        base_cpu, base_wall = _median(cpu[0]), _median(wall[0])
        section: dict[str, Any] = {"decisions": n, "handler_cpu_ns_off": round(base_cpu),
                                   "wall_ns_off": round(base_wall)}
        for i, name in enumerate(names[1:], 1):
            added = statistics.median(x - y for x, y in zip(cpu[i][1:], cpu[0][1:], strict=True))
            writer_ns = (wb[i] - wa[i]) * 1e9 / n
            section[name] = {
                "handler_added_cpu_ns": round(added),
                "writer_cpu_ns": round(writer_ns),
                "cpu_ratio_on_to_off": round((base_cpu + max(added, 0) + writer_ns) / base_cpu, 3),
                "wall_ns": round(_median(wall[i])),
            }
        out[label] = section
    return out


def lines(r: dict[str, Any]) -> list[str]:
    out = []
    for label, title in (("unary", "ScreenTransaction, one client"),
                         ("batch1000", "ScreenBatch of 1,000")):
        s = r[label]
        out.append(f"{title}: off {s['handler_cpu_ns_off'] / 1000:.1f} µs CPU, "
                   f"{s['wall_ns_off'] / 1000:.1f} µs wall per decision")
        for name in ("fsync_batch", "fsync_none"):
            x = s[name]
            out.append(f"  {name}: +{x['handler_added_cpu_ns'] / 1000:.2f} µs handler CPU, "
                       f"+{x['writer_cpu_ns'] / 1000:.2f} µs writer CPU (ratio "
                       f"{x['cpu_ratio_on_to_off']:.3f}); wall {x['wall_ns'] / 1000:.1f} µs")
    c = r["concurrent_unary"]
    out.append(f"{c['threads']} concurrent unary clients: off {c['off']['calls_per_s']} calls/s; "
               f"fsync_batch {c['fsync_batch']['calls_per_s']} calls/s, "
               f"{c['fsync_batch']['calls_per_write']} calls per write")
    rs = r["restore"]
    out.append(f"restart: {rs['decisions']} journalled decisions ({rs['events']} entries) "
               f"re-applied in {rs['seconds']:.2f} s, {rs['us_per_decision']:.0f} µs each")
    out.append(f"journal bytes per decision: {r['journal_bytes_per_decision']}; "
               f"writes: {r['writes']}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--unary", type=int, default=4_000, help="ScreenTransaction calls per servicer")
    ap.add_argument("--batches", type=int, default=12, help="ScreenBatch(1,000) calls")
    ap.add_argument("--block", type=int, default=250, help="calls per block")
    ap.add_argument("--threads", type=int, default=8, help="concurrent unary clients")
    ap.add_argument("--dir", type=Path, default=None, help="where the journals are written")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    # each figure is a median over blocks after the first (it warms caches): two at least
    if args.block < 1 or args.unary < 2 * args.block:
        ap.error(f"--unary must be at least twice --block (two blocks), got {args.unary} and "
                 f"{args.block}")
    if args.batches < 2 or args.threads < 1:
        ap.error("--batches must be 2 or more and --threads 1 or more")
    r = stamp(measure(args.unary, args.batches, args.block, args.dir, args.threads))
    publish(r, lines(r), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
