"""Offline throughput: `python -m bench.offline [--events 1000000]`.

Generates a labelled synthetic stream (``screening synth``), then replays it through the feature
and policy kernels with and without the graph pass (``screening replay``), and prints events per
second for each stage on one core, beside the target of the offline issue (1 M events/s for
features + policy, generation at least as fast).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from screening.config import load_settings
from screening.offline.memory import for_batch_jobs
from screening.offline.replay import replay
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy

__all__ = ["main", "measure"]

TARGET_EVENTS_PER_S = 1_000_000


def _runs(values: list[float]) -> dict[str, Any]:
    """Median and every run (this machine's run-to-run spread is wide; one run can mislead)."""
    return {"median": round(statistics.median(values)), "runs": [round(v) for v in values]}


def measure(events: int, seed: int = 1, graph: bool = True, repeat: int = 3) -> dict[str, Any]:
    """Events/s of generation and of each replay stage, each run ``repeat`` times."""
    for_batch_jobs()  # as `screening synth` and `screening replay` do
    gen: list[float] = []
    frame = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = generate(SynthConfig(seed=seed, events_target=events))
        gen.append(result.events.height / (time.perf_counter() - t0))
        if frame is not None and not result.events.equals(frame):
            raise RuntimeError("generation is not deterministic")  # it is tested; cheap to recheck
        frame = result.events
        del result
    assert frame is not None
    policy = load_policy()
    out: dict[str, Any] = {
        "events": frame.height,
        "repeat": repeat,
        "generate_events_per_s": _runs(gen),
        "target_events_per_s": TARGET_EVENTS_PER_S,
    }
    stages: list[tuple[str, dict[str, Any]]] = [("no_graph", {"graph": {"enabled": False}})]
    if graph:
        stages.append(("with_graph", {}))
    out["accounts"] = out["phones"] = 0
    for name, overrides in stages:
        settings = load_settings(overrides=overrides)
        replay(frame.head(1000), policy, settings)  # kernels loaded before timing
        fp: list[float] = []
        gp: list[float] = []
        e2e: list[float] = []
        for _ in range(repeat):
            r = replay(frame, policy, settings)
            out["accounts"], out["phones"] = r.encoded.n_accounts, r.encoded.n_phones
            fp.append(r.events_per_second)
            gp.append(r.graph_events_per_second if settings.graph.enabled else 0.0)
            e2e.append(frame.height / r.total_seconds)
            del r
        out[name] = {
            "features_policy_events_per_s": _runs(fp),
            "graph_events_per_s": _runs(gp) if settings.graph.enabled else None,
            "end_to_end_events_per_s": _runs(e2e),
        }
    return out


def _m(runs: dict[str, Any]) -> str:
    """'1.23 M events/s (1.10-1.30)': the median and the range of the runs."""
    lo, hi = min(runs["runs"]) / 1e6, max(runs["runs"]) / 1e6
    return f"{runs['median'] / 1e6:.2f} M events/s ({lo:.2f}-{hi:.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each stage; the median and the range are reported")
    parser.add_argument("--no-graph", action="store_true",
                        help="skip the second replay with the graph pass (the slow one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    m = measure(args.events, args.seed, graph=not args.no_graph, repeat=args.repeat)
    print(f"{m['events']:,} events ({m['accounts']:,} accounts, {m['phones']:,} phones), "
          f"median of {m['repeat']} runs (range)")
    print(f"generate: {_m(m['generate_events_per_s'])}")
    for name in [n for n in ("no_graph", "with_graph") if n in m]:
        r = m[name]
        graph = f"; graph pass {_m(r['graph_events_per_s'])}" if r["graph_events_per_s"] else ""
        print(f"replay {name}: features + policy {_m(r['features_policy_events_per_s'])} on one "
              f"core{graph}; end to end (read, validate, encode, decide, frame) "
              f"{_m(r['end_to_end_events_per_s'])}")
    print(f"target: {TARGET_EVENTS_PER_S / 1e6:.1f} M events/s for features + policy, "
          "generation at least as fast")
    if args.json:
        args.json.write_text(json.dumps(m, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
