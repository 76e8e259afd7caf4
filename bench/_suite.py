"""The benchmark suite: servers, rate sweeps, batch throughput, kernels and memory -> JSON.

``run_suite(SuiteConfig)`` does, in order:

1. start the screening service (its own process, as shipped), probe its reply sizes, then start
   the echo baseline (its own process) answering with those sizes;
2. unary sweep: for each offered rate, a step against the service and one against the baseline
   (open loop, unique transaction ids); a target stops at its first rate that misses the SLA
   (p99 above it, or any error or timeout); the highest rate before that is its sustained rate;
3. the same for the bidi stream; then ScreenBatch throughput at 100 and 1,000 per message;
4. kernel microbenchmarks (pytest-benchmark, ``bench/test_kernels.py``) in a subprocess;
5. memory of the state at the configured account counts (``bench._memory``) in a subprocess;
6. the audit trail's cost per decision, audit on against off in one run (``bench.audit``), in a
   subprocess.

The load generator runs in a worker process of its own (spawned once, no numba, no big heap),
so neither server shares a GIL with it; the orchestrator only waits. Every latency figure is
also given as a ratio to the baseline at the same offered rate.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from bench._echo import echo_method
from bench._inproc import git_commit, git_dirty
from bench._loadgen import StepResult, StepSpec, init_worker, probe_sizes, run_step
from bench._mix import TxnPool, pool_for
from bench._servers import ServerProcess, machine_cpu, start_echo, start_service

__all__ = ["PRESETS", "SuiteConfig", "run_suite", "sustained_rate"]

ROOT = Path(__file__).resolve().parent.parent
_SVC = "/screening.v1.Screening/"
SERVICE_METHODS = {
    "unary": _SVC + "ScreenTransaction",
    "stream": _SVC + "ScreenStream",
    "batch100": _SVC + "ScreenBatch",
    "batch1000": _SVC + "ScreenBatch",
    # the same with TransactionBatch.columnar set: the reply in DecisionBatch.columns
    "batch100c": _SVC + "ScreenBatch",
    "batch1000c": _SVC + "ScreenBatch",
}
SCHEMA_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class SuiteConfig:
    """What one run measures; ``PRESETS`` holds the quick, full and smoke shapes."""

    mode: str
    out_dir: Path
    sla_ms: float = 10.0
    duration_s: float = 3.0
    warmup_s: float = 0.5
    unary_rates: tuple[float, ...] = (250, 500, 1_000, 1_500, 2_000, 3_000, 4_000)
    stream_rates: tuple[float, ...] = (500, 1_000, 2_000, 3_000, 4_000)
    batch_sizes: tuple[int, ...] = (100, 1_000)
    batch_duration_s: float = 2.0
    batch_prepare_s: float = 2.0
    deadline_s: float = 1.0
    connections: int = 2
    streams: int = 2
    mix: str = "auto"
    # A week of the generator's payments among pool_size / 10 persons, cycled through with fresh
    # ids and times, each step after the last (README, Traffic): the quick suite goes through it
    # about once. At 50,000 it went through it several times within the graph's 7-day windows,
    # every account paying several times a second: a density of the bench's own making.
    pool_size: int = 250_000
    kernels: bool = True
    # the unary and stream sweeps and the h2load cross-check (off: ScreenBatch only)
    sweeps: bool = True
    kernel_max_time_s: float = 0.3
    kernel_select: str = ""  # a pytest -k expression; empty runs every kernel benchmark
    h2load: bool = True  # the optional C-generator cross-check, when h2load is on PATH
    h2load_duration_s: float = 3.0
    memory_accounts: tuple[int, ...] = (1_000_000,)
    # the audit trail's A/B (bench.audit): ScreenTransaction calls and ScreenBatch(1,000)s
    audit: bool = True
    audit_unary: int = 6_000
    audit_batches: int = 12
    audit_block: int = 250
    memory_extrapolate_to: tuple[int, ...] = (10_000_000,)
    initial_accounts: int = 262_144
    server_timeout_s: float = 300.0
    stop_after_misses: int = 2
    # On a shared machine: before each step, wait (up to quiet_wait_s, and quiet_budget_s in all)
    # until other processes use less than quiet_cores of CPU.
    quiet_wait_s: float = 6.0
    quiet_budget_s: float = 40.0
    quiet_cores: float = 0.3
    command: str = ""


PRESETS: dict[str, dict[str, Any]] = {
    "quick": {},
    "full": {
        "duration_s": 10.0,
        "warmup_s": 2.0,
        "unary_rates": (100, 250, 500, 750, 1_000, 1_250, 1_500, 1_750, 2_000, 2_500, 3_000,
                        3_500, 4_000, 5_000, 6_000, 8_000),
        "stream_rates": (250, 500, 1_000, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000, 6_000,
                         8_000),
        "batch_duration_s": 8.0,
        "batch_prepare_s": 8.0,
        "h2load_duration_s": 10.0,
        "quiet_wait_s": 30.0,
        "quiet_budget_s": 600.0,
        "pool_size": 1_000_000,
        "kernel_max_time_s": 2.0,
        "memory_accounts": (1_000_000, 10_000_000),
        "memory_extrapolate_to": (),
        "initial_accounts": 1_048_576,
    },
    "smoke": {
        "duration_s": 0.6,
        "warmup_s": 0.2,
        "unary_rates": (50, 100),
        "stream_rates": (50,),
        "batch_duration_s": 0.5,
        "batch_prepare_s": 0.3,
        "pool_size": 2_000,
        "kernel_max_time_s": 0.01,
        "kernel_select": "not 1000k",
        "h2load": False,
        "quiet_wait_s": 0.0,
        "memory_accounts": (20_000,),
        "initial_accounts": 65_536,
        "audit_unary": 400,
        "audit_batches": 2,
        "audit_block": 100,
    },
}


Progress = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- results
def point(res: StepResult, sla_ms: float) -> dict[str, Any]:
    """One measured step as it goes into the JSON."""
    server_cpu_s = res.server_cpu_s
    # CPU used by processes other than this step's server and generator (a shared machine).
    other_cores = max(0.0, res.machine_busy_s - res.server_cpu_s - res.client_cpu_s) / max(
        res.window_s, 1e-9)
    j = res.to_json()
    s = j["summary_ms"]
    lag = j["send_lag_ms"]
    per = res.spec.batch_size or 1
    out = {
        "rate": res.spec.rate,
        "sent": res.sent,
        "ok": res.ok,
        "errors": res.errors,
        "timeouts": res.timeouts,
        "error_codes": res.error_codes,
        "achieved_rate": round(res.achieved_rate, 1),
        "p50_ms": s["p50"],
        "p90_ms": s["p90"],
        "p99_ms": s["p99"],
        "p99_9_ms": s["p99_9"],
        "max_ms": s["max"],
        "meets_sla": meets_sla(res, sla_ms),
        "send_lag_p99_ms": lag["p99"],
        "send_lag_max_ms": lag["max"],
        "generator_limited": lag["p99"] > sla_ms / 2,
        "client_cpu_us_per_request": round(res.client_cpu_s / max(res.sent_total, 1) * 1e6, 1),
        "server_cpu_us_per_request": round(server_cpu_s / max(res.sent_total, 1) * 1e6, 1),
        "server_cpu_us_per_transaction": round(server_cpu_s / max(res.sent_total * per, 1) * 1e6, 2),
        "other_processes_cpu_cores": round(other_cores, 2),
        # Other processes took more than a quarter of a core while this step ran.
        "disturbed": other_cores > 0.25,
        "request_bytes": round(res.request_bytes, 1),
        "reply_bytes": round(res.reply_bytes, 1),
        "elapsed_s": round(res.elapsed_s, 3),
        "notes": res.notes,
        "histogram": res.latency,
    }
    if res.spec.batch_size:
        out["batch_size"] = res.spec.batch_size
        out["transactions_per_s"] = round(res.transactions_per_s, 1)
    return out


def meets_sla(res: StepResult, sla_ms: float) -> bool:
    """p99 within the SLA, no errors, no timeouts, and every request answered."""
    if res.ok == 0 or res.errors or res.timeouts or res.ok < res.sent:
        return False
    return bool(res.histogram().percentile(99) <= sla_ms * 1e6)


def sustained_rate(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Highest offered rate meeting the SLA with every lower rate meeting it too."""
    best = 0.0
    failed_at: float | None = None
    for p in sorted(points, key=lambda p: p["rate"]):
        if not p["meets_sla"]:
            failed_at = p["rate"]
            break
        best = p["rate"]
    passing = [p["rate"] for p in points if p["meets_sla"]]
    return {
        "rate": best,
        "first_failing_rate": failed_at,
        # No rate failed: the true limit is at least ``rate``, beyond what was offered.
        "limit_reached": failed_at is not None,
        # Any rate that met the SLA, even above a miss (a miss can be a neighbour's burst).
        "highest_passing_rate": max(passing, default=0.0),
    }


def ratios(service: Sequence[dict[str, Any]], baseline: Sequence[dict[str, Any]]
           ) -> list[dict[str, Any]]:
    """Service / baseline latency at each offered rate both were measured at."""
    base = {p["rate"]: p for p in baseline}
    out = []
    for p in service:
        b = base.get(p["rate"])
        if b is None:
            continue
        row: dict[str, Any] = {"rate": p["rate"]}
        for key in ("p50_ms", "p99_ms", "p99_9_ms", "max_ms", "server_cpu_us_per_request"):
            row[key.removesuffix("_ms")] = round(p[key] / b[key], 2) if b[key] > 0 else None
        row["both_meet_sla"] = p["meets_sla"] and b["meets_sla"]
        out.append(row)
    return out


# ----------------------------------------------------------------------------- machine
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info() -> dict[str, Any]:
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("numba", "numpy", "grpcio", "protobuf", "polars")},
        "git_commit": git_commit() or "",
        "git_dirty": bool(git_dirty()),
        "load_average_at_start": list(os.getloadavg()),
    }


# ----------------------------------------------------------------------------- running
@dataclass
class _Ctx:
    cfg: SuiteConfig
    pool: ProcessPoolExecutor
    service: ServerProcess
    baseline: ServerProcess
    token: str
    progress: Progress
    row: int = 0
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)
    quiet_spent_s: float = 0.0

    def wait_quiet(self) -> tuple[float, float]:
        """Wait until the machine is quiet (see SuiteConfig.quiet_*); returns (waited s, cores busy)."""
        cfg = self.cfg
        waited = 0.0
        busy = 0.0
        while True:
            b0, t0 = machine_cpu()[0], time.perf_counter()
            time.sleep(0.25)
            busy = (machine_cpu()[0] - b0) / (time.perf_counter() - t0)
            room = min(cfg.quiet_wait_s - waited, cfg.quiet_budget_s - self.quiet_spent_s)
            if busy < cfg.quiet_cores or room <= 0:
                return waited, busy
            waited += 0.25
            self.quiet_spent_s += 0.25

    def server(self, target: str) -> ServerProcess:
        return self.service if target == "service" else self.baseline

    def method(self, target: str, kind: str) -> str:
        return SERVICE_METHODS[kind] if target == "service" else echo_method(kind)

    def step(self, target: str, kind: str, rate: float, **extra: Any) -> dict[str, Any]:
        cfg = self.cfg
        batch = int(kind.removeprefix("batch").removesuffix("c")) if kind.startswith("batch") else 0
        spec = StepSpec(
            target=target, address=self.server(target).address, kind=kind,
            method=self.method(target, kind), rate=rate,
            duration_s=cfg.batch_duration_s if batch else cfg.duration_s,
            warmup_s=cfg.warmup_s, deadline_s=cfg.deadline_s, first_row=self.row,
            id_prefix=f"b{os.getpid()}-{self.steps}-{target[0]}{kind[0]}{int(rate)}",
            token=self.token, connections=cfg.connections, streams=cfg.streams,
            batch_size=batch, prepare_s=cfg.batch_prepare_s,
            server_pid=self.server(target).pid, **extra)
        self.steps += 1
        self.row += int((spec.warmup_s + spec.duration_s) * max(rate, 1)) + 1
        waited, busy_before = self.wait_quiet() if cfg.quiet_wait_s > 0 else (0.0, 0.0)
        res: StepResult = self.pool.submit(run_step, spec).result()
        # a batch step is closed loop: it took as many templates as it sent (the baseline cycles
        # through a few), so the next step goes on after them rather than replaying them
        self.row += res.rows_used if target == "service" else 0
        p = point(res, cfg.sla_ms)
        p["waited_for_quiet_s"] = round(waited, 2)
        p["machine_busy_cores_before"] = round(busy_before, 2)
        elapsed = time.perf_counter() - self.started
        if batch:
            self.progress(
                f"[{elapsed:6.1f}s] {kind:9s} {target:8s} {p['transactions_per_s']:>9,.0f} txn/s  "
                f"p50 {p['p50_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms  "
                f"server {p['server_cpu_us_per_transaction']:.1f} us/txn")
        else:
            flag = "ok " if p["meets_sla"] else "MISS"
            self.progress(
                f"[{elapsed:6.1f}s] {kind:9s} {target:8s} {rate:>6,.0f}/s {flag} "
                f"p50 {p['p50_ms']:7.2f}  p99 {p['p99_ms']:7.2f}  p99.9 {p['p99_9_ms']:7.2f}  "
                f"max {p['max_ms']:7.2f} ms  err {p['errors']} to {p['timeouts']}  "
                f"lag p99 {p['send_lag_p99_ms']:.2f} ms  other cpu {p['other_processes_cpu_cores']:.2f}")
        time.sleep(0.2)  # let both sides drain before the next step
        return p


def _sweep(ctx: _Ctx, kind: str, rates: Sequence[float]) -> dict[str, Any]:
    """Step the offered rate up for both targets; a target stops after ``stop_after_misses``
    consecutive SLA misses (one more point past the knee draws the curve) or on any error."""
    points: dict[str, list[dict[str, Any]]] = {"service": [], "baseline": []}
    misses = {"service": 0, "baseline": 0}
    stopped = {"service": False, "baseline": False}
    for rate in rates:
        for target in ("service", "baseline"):
            if stopped[target]:
                continue
            p = ctx.step(target, kind, rate)
            points[target].append(p)
            misses[target] = 0 if p["meets_sla"] else misses[target] + 1
            overloaded = p["errors"] + p["timeouts"] > 0.01 * max(p["sent"], 1)
            stopped[target] = misses[target] >= ctx.cfg.stop_after_misses or overloaded
        if all(stopped.values()):
            break
    return {
        "service": points["service"],
        "baseline": points["baseline"],
        "max_sustained_rate": {t: sustained_rate(points[t]) for t in points},
        "ratio_to_baseline": ratios(points["service"], points["baseline"]),
    }


def _batches(ctx: _Ctx) -> dict[str, Any]:
    """Each size with the classic reply (key "100") and the columnar one ("100-columnar")."""
    out: dict[str, Any] = {}
    for size, columnar in itertools.product(ctx.cfg.batch_sizes, (False, True)):
        kind = f"batch{size}" + ("c" if columnar else "")
        svc = ctx.step("service", kind, 0)
        base = ctx.step("baseline", kind, 0)
        out[f"{size}-columnar" if columnar else str(size)] = {
            "service": svc,
            "baseline": base,
            "ratio_to_baseline": {
                "transactions_per_s": round(svc["transactions_per_s"] / base["transactions_per_s"], 3)
                if base["transactions_per_s"] else None,
                "p50": round(svc["p50_ms"] / base["p50_ms"], 2) if base["p50_ms"] else None,
                "p99": round(svc["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None,
            },
            "mode": f"closed loop, {StepSpec.batch_concurrency} batches in flight, unique ids "
                    "(the baseline does not read its requests and reuses them)",
        }
    return out


def _h2load(ctx: _Ctx, pool: TxnPool) -> dict[str, Any]:
    """Unary capacity of each server process seen by a C generator (see bench._h2load)."""
    from bench import _h2load
    from bench._mix import stamp

    if not ctx.cfg.h2load:
        return {"skipped": "not in this mode"}
    if not _h2load.available():
        ctx.progress("h2load: not on PATH (apt-get install nghttp2-client): cross-check skipped")
        return {"skipped": "h2load not on PATH (Debian package nghttp2-client)"}
    body = stamp(pool.templates, 0, [f"h2load-{os.getpid()}-same-id"], [int(time.time() * 1000)])[0]
    out: dict[str, Any] = {"note": _h2load.__doc__.split("\n\n")[0].replace("\n", " ")
                           if _h2load.__doc__ else "",
                           "caveat": "one request replayed: the service answers every call after "
                                     "the first from its idempotency memory (duplicate path); "
                                     "gRPC status codes are not checked"}
    for target in ("baseline", "service"):
        r = _h2load.capacity(ctx.server(target).address, ctx.method(target, "unary"), body,
                             ctx.token if target == "service" else "",
                             duration_s=ctx.cfg.h2load_duration_s)
        out[target] = r
        ctx.progress(f"h2load   unary     {target:8s} {r.get('requests_per_s') or 0:>9,.0f} calls/s "
                     f"(closed loop, 32 in flight)  p50 {r.get('p50_ms', 0):.2f}  p99 "
                     f"{r.get('p99_ms', 0):.2f} ms")
    b, s = out["baseline"].get("requests_per_s"), out["service"].get("requests_per_s")
    out["ratio_requests_per_s"] = round(s / b, 3) if b and s else None
    return out


def kernels(cfg: SuiteConfig, progress: Progress) -> dict[str, Any]:
    """Run bench/test_kernels.py under pytest-benchmark; per-event figures from its JSON."""
    test_file = Path(__file__).resolve().parent / "test_kernels.py"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kernels.json"
        args = [sys.executable, "-m", "pytest", str(test_file), "-q", "-p", "no:cacheprovider",
                "--benchmark-enable", f"--benchmark-json={out}",
                f"--benchmark-max-time={cfg.kernel_max_time_s}", "--benchmark-min-rounds=3",
                "-o", "addopts=", "-W", "ignore::DeprecationWarning"]
        if cfg.kernel_select:
            args += ["-k", cfg.kernel_select]
        t0 = time.perf_counter()
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        progress(f"kernels: pytest-benchmark exited {proc.returncode} in {time.perf_counter() - t0:.1f} s")
        skipped = [line.split(": ", 1)[-1] for line in proc.stdout.splitlines()
                   if line.startswith("SKIPPED")]
        if not out.exists():
            return {"error": (proc.stdout + proc.stderr)[-3000:], "skipped": skipped}
        data = json.loads(out.read_text())
    results: dict[str, Any] = {}
    for b in data["benchmarks"]:
        info = b["extra_info"]
        per = int(info.get("events_per_call", 1))
        st = b["stats"]
        results[b["name"]] = {
            **info,
            "us_per_call_median": round(st["median"] * 1e6, 3),
            "us_per_call_mean": round(st["mean"] * 1e6, 3),
            "us_per_event_median": round(st["median"] * 1e6 / per, 4),
            "rounds": st["rounds"],
        }
    summary = _kernel_summary(results)
    for line in summary.get("lines", []):
        progress(f"kernels: {line}")
    return {"command": shlex.join(["python", *args[1:]]), "benchmarks": results,
            "summary": summary, "skipped": skipped, "exit_code": proc.returncode}


def _kernel_summary(results: dict[str, Any]) -> dict[str, Any]:
    def find(what: str, impl: str, per: int, accounts: int | None = None) -> float | None:
        for r in results.values():
            if (r.get("what"), r.get("impl"), r.get("events_per_call")) == (what, impl, per) and (
                    accounts is None or r.get("accounts") == accounts):
                return float(r["us_per_event_median"])
        return None

    s: dict[str, Any] = {
        "feature_update_single_us_per_event": {"10k": find("feature_update", "numba", 1, 10_000),
                                               "1M": find("feature_update", "numba", 1, 1_000_000)},
        "feature_update_batch1000_us_per_event": {
            "10k": find("feature_update", "numba", 1_000, 10_000),
            "1M": find("feature_update", "numba", 1_000, 1_000_000)},
        "reference_single_us_per_event": find("feature_update", "reference", 1),
        "reference_batch1000_us_per_event": find("feature_update", "reference", 1_000),
        "policy_evaluation_us": find("policy_evaluation", "numba", 1),
        "policy_evaluation_reference_us": find("policy_evaluation", "reference", 1),
        "graph_checks_us": find("graph_checks", "numba", 1),
        "graph_checks_reference_us": find("graph_checks", "reference", 1),
    }
    single, batch = s["feature_update_single_us_per_event"], s["feature_update_batch1000_us_per_event"]
    lines = [f"feature update, 1 event/call: {single['10k']} us (10k accounts), {single['1M']} us (1M)",
             f"feature update, 1,000/call: {batch['10k']} us/event (10k), {batch['1M']} us/event (1M)",
             f"policy evaluation: {s['policy_evaluation_us']} us/row",
             f"graph checks (add edges + every detector, 60 k-edge graph): "
             f"{s['graph_checks_us']} us/transfer, reference {s['graph_checks_reference_us']} us"]
    if s["reference_single_us_per_event"] is not None:
        lines.append(f"reference: {s['reference_single_us_per_event']} us/event single, "
                     f"{s['reference_batch1000_us_per_event']} us/event batched, policy "
                     f"{s['policy_evaluation_reference_us']} us/row")
        if single["10k"] and batch["10k"]:
            s["speedup_vs_reference"] = {
                "single": round(s["reference_single_us_per_event"] / single["10k"], 1),
                "batch1000": round(s["reference_batch1000_us_per_event"] / batch["10k"], 1),
            }
    else:
        lines.append("reference: skipped (tests/reference.py not on this branch)")
    s["lines"] = lines
    return s


def memory(cfg: SuiteConfig, progress: Progress) -> dict[str, Any]:
    """Measure the state at each configured account count, each in a fresh process."""
    measured: list[dict[str, Any]] = []
    for n in cfg.memory_accounts:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "bench._memory", "--accounts", str(n)],
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            measured.append({"accounts": n, "measured": False, "error": proc.stderr[-2000:]})
            progress(f"memory: {n:,} accounts failed: {proc.stderr.strip()[-300:]}")
            continue
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        measured.append(m)
        progress(f"memory: {n:,} accounts in {time.perf_counter() - t0:.1f} s: "
                 f"{m['feature_bytes_per_account']} B/account of feature arrays, "
                 f"{m['total_rss_bytes_per_account']} B/account resident with the engine's ids; "
                 f"{m['bytes_per_pair_live']} B per relationship ({m['bytes_per_pair_slot']} B/slot)")
    out: dict[str, Any] = {"measured": measured, "extrapolated": []}
    extrapolated: list[dict[str, Any]] = out["extrapolated"]
    ok = [m for m in measured if m.get("measured")]
    if ok:
        largest = max(ok, key=lambda m: m["accounts"])
        for n in cfg.memory_extrapolate_to:
            if any(m["accounts"] == n for m in ok):
                continue
            scale = n / largest["accounts"]
            extrapolated.append({
                "accounts": n,
                "measured": False,
                "from_accounts": largest["accounts"],
                "note": f"extrapolated linearly from {largest['accounts']:,} accounts; "
                        "`python -m bench --full` allocates it for real",
                "feature_arrays_bytes": int(largest["feature_arrays_bytes"] * scale),
                "total_rss_bytes": int(largest["total_rss_bytes_per_account"] * n),
                "pair_table_bytes": int(largest["bytes_per_pair_live"] * n),
            })
    return out


def audit_cost(cfg: SuiteConfig, progress: Progress) -> dict[str, Any]:
    """The audit trail's cost per decision (``python -m bench.audit``), in a fresh process."""
    from bench.audit import lines

    args = [sys.executable, "-m", "bench.audit", "--json", "--unary", str(cfg.audit_unary),
            "--batches", str(cfg.audit_batches), "--block", str(cfg.audit_block)]
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        progress(f"audit: failed: {proc.stderr.strip()[-300:]}")
        return {"error": proc.stderr[-2000:]}
    r: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    r["command"] = shlex.join(["python", *args[1:]])
    for line in lines(r):
        progress(f"audit: {line}")
    progress(f"audit: {time.perf_counter() - t0:.1f} s")
    return r


@contextmanager
def _servers(cfg: SuiteConfig, pool: TxnPool, workdir: Path, progress: Progress
             ) -> Iterator[tuple[ServerProcess, ServerProcess, str, dict[str, float]]]:
    t0 = time.perf_counter()
    env = {"SCREENING_STATE__INITIAL_ACCOUNTS": str(cfg.initial_accounts)}
    service, token = start_service(workdir, env=env, timeout=cfg.server_timeout_s)
    progress(f"service up on {service.address} in {time.perf_counter() - t0:.1f} s "
             f"(pid {service.pid}, log {service.log_path})")
    baseline: ServerProcess | None = None
    try:
        sizes = _probe(pool, service, token)
        baseline = start_echo(workdir, sizes)
        progress(f"baseline echo up on {baseline.address}; reply bytes {sizes}")
        yield service, baseline, token, sizes
    finally:
        if baseline is not None:
            baseline.stop()
        rc = service.stop()
        progress(f"servers stopped (service exit {rc})")


def _probe(pool: TxnPool, service: ServerProcess, token: str) -> dict[str, float]:
    init_worker(pool.templates[:5_000])
    return probe_sizes(service.address, SERVICE_METHODS, token,
                       {"batch100": 100, "batch1000": 1_000, "batch100c": 100,
                        "batch1000c": 1_000}, f"probe{os.getpid()}")


def run_suite(cfg: SuiteConfig, progress: Progress = _print) -> dict[str, Any]:
    """Run everything ``cfg`` asks for; writes ``<out>/<mode>.json`` and ``.png``; returns the dict."""
    from bench._plot import plot
    from bench._report import markdown

    started = time.perf_counter()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "suite": cfg.mode,
        "command": cfg.command,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "sla_ms": cfg.sla_ms,
    }
    t0 = time.perf_counter()
    pool = pool_for(cfg.mix, cfg.pool_size)
    progress(f"mix: {pool.source}, {len(pool):,} templates over {pool.accounts:,} accounts, "
             f"{pool.mean_bytes():.0f} B mean ({time.perf_counter() - t0:.1f} s)")
    ctx_mp = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, \
            _servers(cfg, pool, Path(tmp), progress) as (service, baseline, token, sizes), \
            ProcessPoolExecutor(1, mp_context=ctx_mp, initializer=init_worker,
                                initargs=(pool.templates,)) as workers:
        ctx = _Ctx(cfg, workers, service, baseline, token, progress)
        result["mix"] = {"source": pool.source, "templates": len(pool), "accounts": pool.accounts,
                         "request_bytes_mean": round(pool.mean_bytes() + 30, 1),
                         "reply_bytes_mean": sizes,
                         "synth_hook": "screening.offline.synth.generate (used when importable)"}
        result["load_generator"] = {
            "kind": "python grpc.aio, open loop, in its own process",
            "latency_from": "scheduled send time (no coordinated omission)",
            "connections": cfg.connections, "streams": cfg.streams,
            "deadline_s": cfg.deadline_s, "duration_s": cfg.duration_s, "warmup_s": cfg.warmup_s,
            "histogram": "log-linear, 2^-7 relative precision (percentiles at most 0.79 % high)",
            "shared_machine": f"before each step the suite waits up to {cfg.quiet_wait_s:g} s "
                              f"({cfg.quiet_budget_s:g} s in all) for other processes to use less "
                              f"than {cfg.quiet_cores:g} cores; each point records the CPU others "
                              "used while it ran (other_processes_cpu_cores, disturbed)",
        }
        progress("-- warm-up (not recorded)")
        ctx.step("service", "unary", min(cfg.unary_rates))
        if cfg.sweeps:
            progress("-- unary ScreenTransaction sweep")
            result["unary"] = _sweep(ctx, "unary", cfg.unary_rates)
            progress("-- bidi ScreenStream sweep")
            result["stream"] = _sweep(ctx, "stream", cfg.stream_rates)
        progress("-- ScreenBatch throughput")
        result["batch"] = _batches(ctx)
        if cfg.sweeps:
            progress("-- h2load cross-check (C generator, one replayed request)")
            result["h2load"] = _h2load(ctx, pool)
        result["service_stats"] = {"rss_bytes_at_end": service.rss_bytes()}
    if cfg.kernels:
        progress("-- kernel microbenchmarks")
        result["kernels"] = kernels(cfg, progress)
    if cfg.memory_accounts:
        progress("-- memory")
        result["memory"] = memory(cfg, progress)
    if cfg.audit:
        progress("-- audit trail: cost per decision, on against off")
        result["audit"] = audit_cost(cfg, progress)
    result["graph"] = {"where": "bench/test_kernels.py::test_graph_checks (per transfer); "
                                "python -m bench.graph_latency (12 M edges)"}
    result["machine"]["load_average_at_end"] = list(os.getloadavg())
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["load_generator"]["waited_for_quiet_s"] = round(ctx.quiet_spent_s, 1)
    result["summary"] = summary(result)
    json_path = cfg.out_dir / f"{cfg.mode}.json"
    png_path = cfg.out_dir / f"{cfg.mode}.png"
    tmp_json = json_path.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(result, indent=1) + "\n")
    tmp_json.replace(json_path)
    plot(result, png_path)
    md_path = cfg.out_dir / f"{cfg.mode}.md"
    md_path.write_text(markdown(result) + "\n")
    result["files"] = {"json": str(json_path), "png": str(png_path), "markdown": str(md_path)}
    progress(f"wrote {json_path}, {png_path} and {md_path} in {result['wall_seconds']} s")
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures, in one place at the top level of the JSON."""
    out: dict[str, Any] = {"sla_ms": result["sla_ms"]}
    for kind in ("unary", "stream"):
        sweep = result.get(kind)
        if not sweep:
            continue
        out[f"{kind}_max_sustained_rate"] = {t: sweep["max_sustained_rate"][t]["rate"]
                                            for t in ("service", "baseline")}
        out[f"{kind}_points"] = [
            {"rate": p["rate"], "p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"],
             "p99_9_ms": p["p99_9_ms"], "max_ms": p["max_ms"], "meets_sla": p["meets_sla"]}
            for p in sweep["service"]]
        out[f"{kind}_ratio_to_baseline"] = sweep["ratio_to_baseline"]
    if "batch" in result:
        out["batch_transactions_per_s"] = {
            size: {t: b[t]["transactions_per_s"] for t in ("service", "baseline")}
            for size, b in result["batch"].items()}
    h2 = result.get("h2load", {})
    if "baseline" in h2:
        out["h2load_unary_capacity_calls_per_s"] = {
            t: h2[t].get("requests_per_s") for t in ("service", "baseline")}
    if "kernels" in result and "summary" in result["kernels"]:
        out["kernels"] = {k: v for k, v in result["kernels"]["summary"].items() if k != "lines"}
    audit = result.get("audit", {})
    if "unary" in audit:
        out["audit_cost_per_decision"] = {
            kind: {k: audit[kind][k] for k in ("handler_cpu_ns_without_median",
                                               "request_path_added_cpu_ns_median",
                                               "writer_cpu_ns_per_record", "ratio_with_to_without")}
            for kind in ("unary", "batch1000")}
    if "memory" in result:
        out["memory"] = [
            {k: m.get(k) for k in ("accounts", "measured", "feature_bytes_per_account",
                                   "total_rss_bytes_per_account", "bytes_per_pair_live",
                                   "bytes_per_pair_slot", "total_rss_bytes", "note")
             if k in m}
            for m in result["memory"]["measured"] + result["memory"]["extrapolated"]]
    return out


def with_overrides(cfg: SuiteConfig, **changes: Any) -> SuiteConfig:
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})
