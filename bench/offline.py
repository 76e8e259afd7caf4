"""Offline throughput: `python -m bench.offline [--events 1000000]`.

Generates a labelled synthetic stream (``screening synth``), then replays it through the feature
and policy kernels with and without the graph pass (``screening replay``), and prints events per
second for each stage on one core, beside the target of the offline issue (1 M events/s for
features + policy, generation at least as fast).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from screening.config import load_settings
from screening.offline.replay import replay
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy

__all__ = ["main", "measure"]

TARGET_EVENTS_PER_S = 1_000_000


def measure(events: int, seed: int = 1, graph: bool = True) -> dict[str, Any]:
    """Seconds and events/s of generation and of each replay stage."""
    t0 = time.perf_counter()
    result = generate(SynthConfig(seed=seed, events_target=events))
    gen_s = time.perf_counter() - t0
    frame = result.events
    policy = load_policy()
    out: dict[str, Any] = {
        "events": frame.height,
        "generate_s": round(gen_s, 3),
        "generate_events_per_s": round(frame.height / gen_s),
        "target_events_per_s": TARGET_EVENTS_PER_S,
    }
    stages: list[tuple[str, dict[str, Any]]] = [("no_graph", {"graph": {"enabled": False}})]
    if graph:
        stages.append(("with_graph", {}))
    out["accounts"] = out["phones"] = 0
    for name, overrides in stages:
        settings = load_settings(overrides=overrides)
        replay(frame.head(1000), policy, settings)  # kernels loaded before timing
        r = replay(frame, policy, settings)
        out["accounts"], out["phones"] = r.encoded.n_accounts, r.encoded.n_phones
        out[name] = {
            "total_s": round(r.total_seconds, 3),
            "features_policy_s": round(r.kernel_seconds - r.graph_seconds, 3),
            "features_policy_events_per_s": round(r.events_per_second),
            "graph_s": round(r.graph_seconds, 3),
            "graph_events_per_s": (round(r.graph_events_per_second)
                                   if settings.graph.enabled else None),
            "end_to_end_events_per_s": round(frame.height / r.total_seconds),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-graph", action="store_true",
                        help="skip the second replay with the graph pass (the slow one)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    m = measure(args.events, args.seed, graph=not args.no_graph)
    print(f"generate: {m['events']:,} events ({m['accounts']:,} accounts, {m['phones']:,} phones) "
          f"in {m['generate_s']} s = {m['generate_events_per_s'] / 1e6:.2f} M events/s")
    for name in [n for n in ("no_graph", "with_graph") if n in m]:
        r = m[name]
        graph = (f", graph pass {r['graph_events_per_s'] / 1e6:.2f} M events/s"
                 if r["graph_events_per_s"] else "")
        print(f"replay {name}: features + policy {r['features_policy_events_per_s'] / 1e6:.2f} M "
              f"events/s on one core{graph}; end to end (read, validate, encode, decide, frame) "
              f"{r['end_to_end_events_per_s'] / 1e6:.2f} M events/s")
    print(f"target: {TARGET_EVENTS_PER_S / 1e6:.1f} M events/s for features + policy")
    if args.json:
        args.json.write_text(json.dumps(m, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
