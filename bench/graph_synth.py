"""What the graph rules add on the scenario generator: backtest with and without them.

    python -m bench.graph_synth [--persons 20000] [--days 30] [--rate 0.01] [--seed 21]

Generates a labelled stream (``screening.offline.synth``), replays it with the default policy
and with the same policy minus its ``GRAPH_*`` rules (graph features still computed), and
prints the backtest side by side: per scenario the cases stopped, account and event recall,
and overall the alert rates of ordinary accounts and events.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from screening.config import load_settings
from screening.offline.backtest import backtest, format_metrics
from screening.offline.replay import replay
from screening.offline.synth import SynthConfig, generate
from screening.policy import default_policy_text, parse_policy

__all__ = ["main", "without_graph_rules"]


def without_graph_rules(text: str) -> str:
    """The policy text with every ``[[rule]]`` whose code starts with GRAPH_ removed."""
    blocks = re.split(r"(?m)^(?=\[\[rule\]\]|\[\[call_rule\]\]|# -{10,})", text)
    return "".join(b for b in blocks if not re.search(r'(?m)^code = "GRAPH_', b))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rate", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    synth = generate(SynthConfig(seed=args.seed, n_persons=args.persons,
                                 n_organisations=max(10, args.persons // 20), days=args.days,
                                 scenario_rate=args.rate))
    print(f"generated {synth.events.height:,} events in {time.perf_counter() - t0:.1f} s: "
          + ", ".join(f"{k} {v}" for k, v in synth.stats.items() if k.startswith("cases_")))
    settings = load_settings()
    text = default_policy_text()
    metrics = {}
    for name, policy_text in (("without graph rules", without_graph_rules(text)),
                              ("with graph rules", text)):
        t0 = time.perf_counter()
        result = replay(synth.events, parse_policy(policy_text, name), settings)
        metrics[name] = backtest(synth.events, result.decisions, synth.accounts)
        print(f"{name}: replay {time.perf_counter() - t0:.1f} s (graph pass "
              f"{result.graph_seconds:.1f} s, {result.graph.edge_count if result.graph else 0:,} "
              "edges)")
    print(format_metrics(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
