"""Victim protection on a labelled synthetic stream: `python -m bench.protection [--seed 1]`.

Generates a stream with every fraud scenario and benign look-alike of ``screening synth``,
replays it through the service's offline replay (the shipped default policy, default
settings: what ``screening replay`` does without options), and reports from labels and
decisions only (definitions in ``screening/offline/protection.py``): victims intervened before
their first transfer, victim money stopped and held, repeat payments after an intervention,
mules stopped and how much of their money was still there, organisers flagged, structurers
reported, large-value report recall, and how many ordinary customers and look-alikes were
bothered. A markdown table goes to stdout, every figure to
``bench/results/protection-<seed>.json``.

Tune on one seed and population, report on another you did not tune on::

    python -m bench.protection --seed 1 --events 1000000 --name tune
    python -m bench.protection --seed 7 --events 1500000 --name holdout
    python -m bench.protection --side-by-side bench/results/protection-1.json bench/results/protection-7.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from bench._inproc import git_commit, git_dirty
from screening.config import load_settings
from screening.offline.memory import for_batch_jobs
from screening.offline.protection import format_protection, protection_metrics
from screening.offline.replay import replay
from screening.offline.reports import large_value_report, load_thresholds
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy

__all__ = ["main", "measure"]

RESULTS = Path(__file__).resolve().parent / "results"
# Planted cases are oversampled against real life (a bank sees far fewer), so that a month of
# a ~10 k-person town holds enough victims, mules and look-alikes to count.
SCENARIO_RATE = 0.04
LOOKALIKE_RATE = 0.04


def measure(
    *, seed: int, events: int | None, persons: int | None, days: int, scenario_rate: float,
    lookalike_rate: float, registry: bool = False, policy_file: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Generate, replay and score one stream; the figures and what produced them."""
    for_batch_jobs()
    if persons is not None:
        cfg = SynthConfig(seed=seed, n_persons=persons, n_organisations=max(10, persons // 10), days=days,
                          scenario_rate=scenario_rate, lookalike_rate=lookalike_rate)  # fmt: skip
    else:
        cfg = SynthConfig(seed=seed, events_target=events or 1_000_000, days=days,
                          scenario_rate=scenario_rate, lookalike_rate=lookalike_rate)  # fmt: skip
    t0 = time.perf_counter()
    synth = generate(cfg)
    t1 = time.perf_counter()
    settings = load_settings(None, {}, {})  # defaults: no config file, no environment
    policy = load_policy(policy_file)  # None: the default policy
    # with ``registry``, the service also knows what the bank knows of its accounts (UpsertAccounts)
    result = replay(synth.events, policy, settings, registry=synth.registry if registry else None)
    t2 = time.perf_counter()
    thresholds = load_thresholds()
    report = large_value_report(synth.events, thresholds, settings)
    ledger = report.select(pl.col("event_ids").explode().alias("event_id"))
    metrics = protection_metrics(
        synth.events, synth.accounts, result.decisions, lines_fen=thresholds.lines_fen(settings),
        settings=settings, timezone_offset_hours=thresholds.timezone_offset_hours, registry=synth.registry,
        ledgers={"offline_daily_report": ledger},
    )  # fmt: skip
    t3 = time.perf_counter()
    out = metrics.as_dict()
    out["run"] = {
        "seed": seed,
        "days": days,
        "persons": synth.stats["persons"],
        "organisations": synth.stats["organisations"],
        "events": synth.events.height,
        "scenario_rate": scenario_rate,
        "lookalike_rate": lookalike_rate,
        "registry": registry,
        "policy_version": policy.version,
        "commit": git_commit(10), "dirty": git_dirty(),
        "seconds": {"generate": round(t1 - t0, 2), "replay": round(t2 - t1, 2), "score": round(t3 - t2, 2)},
        "cases": {k.removeprefix("cases_"): v for k, v in synth.stats.items() if k.startswith("cases_")},
        "decisions": dict(result.decisions.group_by("action").len().sort("action").iter_rows()),
    }
    return out



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--events", type=int, default=None, help="about this many events (default 1,000,000)")
    size.add_argument("--persons", type=int, default=None, help="this many persons instead")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--scenario-rate",
        type=float,
        default=SCENARIO_RATE,
        help=f"share of persons in planted fraud cases (default {SCENARIO_RATE})",
    )
    parser.add_argument(
        "--lookalike-rate",
        type=float,
        default=LOOKALIKE_RATE,
        help=f"share of persons at the centre of a look-alike (default {LOOKALIKE_RATE})",
    )
    parser.add_argument("--policy", type=Path, default=None, metavar="FILE",
                        help="a candidate policy file to measure (default: the shipped policy)")
    parser.add_argument("--name", default=None, help="run name in the table (default: seed-<seed>)")
    parser.add_argument("--registry", action="store_true",
                        help="give the replay the account registry (what UpsertAccounts tells a "
                             "server); without it the service knows only the events")
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where the figures go (default bench/results/protection-<seed>.json)",
    )
    parser.add_argument("--no-json", action="store_true", help="print only")
    parser.add_argument(
        "--side-by-side",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="print earlier runs' tables side by side instead of running",
    )
    args = parser.parse_args(argv)
    if args.side_by_side:
        runs: dict[str, Any] = {}
        for path in args.side_by_side:
            data = json.loads(path.read_text(encoding="utf-8"))
            name = data.get("name") or path.stem
            runs[name if name not in runs else f"{name}#{len(runs) + 1}"] = data
        print(format_protection(runs))
        return 0
    name = args.name or f"seed-{args.seed}"
    figures = measure(seed=args.seed, events=args.events, persons=args.persons, days=args.days,
                      scenario_rate=args.scenario_rate, lookalike_rate=args.lookalike_rate,
                      registry=args.registry, policy_file=args.policy)  # fmt: skip
    figures["name"] = name
    run = figures["run"]
    print(f"{run['events']:,} events, {run['persons']:,} persons, {args.days} days, seed {args.seed}; "
          f"generate {run['seconds']['generate']} s, replay {run['seconds']['replay']} s, "
          f"score {run['seconds']['score']} s; policy {run['policy_version']}\n")  # fmt: skip
    print(format_protection({name: figures}))
    if not args.no_json:
        path = args.json or RESULTS / f"protection-{args.seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"figures -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
