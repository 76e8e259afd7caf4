"""``python -m bench``: the latency SLA benchmark suite in one command.

Quick (default, under 3 minutes on the 2-core machine) or ``--full`` (longer, finer sweeps and
10 M accounts of state for real). Writes ``<out>/<mode>.json`` and ``<out>/<mode>.png``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from bench._suite import PRESETS, SuiteConfig, with_overrides

__all__ = ["build_parser", "config_from_args", "main"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(sorted(float(x) for x in text.split(",") if x.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"rates must be numbers separated by commas: {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be > 0")
    return rates


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(float(x)) for x in text.split(",") if x.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Latency SLA benchmark: open-loop load on the screening service and on a "
                    "bare grpcio echo baseline (each in its own process), rate sweeps against "
                    "the SLA, batch throughput, kernel microbenchmarks and state memory. Writes "
                    "a JSON result and a PNG plot.")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="the quick suite (default): a few rates, 3 s each, under 3 minutes")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="finer, longer sweeps (10 s per rate) and 10 M accounts of state")
    mode.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                      help="tiny rates and durations, seconds in all (CI keeps the suite alive)")
    p.set_defaults(mode="quick")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="directory for <mode>.json and <mode>.png (default: bench/results/)")
    p.add_argument("--sla-ms", type=float, default=None, help="p99 latency SLA in ms (default 10)")
    p.add_argument("--duration", type=float, default=None, help="seconds measured per rate")
    p.add_argument("--warmup", type=float, default=None, help="seconds sent but not counted per rate")
    p.add_argument("--rates", type=_rates, default=None,
                   help="unary offered rates, comma separated (e.g. 250,500,1000)")
    p.add_argument("--stream-rates", type=_rates, default=None,
                   help="bidi stream offered rates (messages/s), comma separated")
    p.add_argument("--batch-duration", type=float, default=None, help="seconds per batch step")
    p.add_argument("--connections", type=int, default=None, help="client connections (default 2)")
    p.add_argument("--streams", type=int, default=None, help="bidi streams (default 2)")
    p.add_argument("--mix", choices=("auto", "builtin", "synth"), default=None,
                   help="traffic: the scenario generator when present (auto), or the built-in mix")
    p.add_argument("--pool", type=int, default=None, dest="pool_size",
                   help="distinct payment templates the load cycles through (quick: 250000, "
                        "about a week of 25,000 persons' payments)")
    p.add_argument("--memory-accounts", type=_counts, default=None,
                   help="account counts to allocate for the memory figures (e.g. 1000000)")
    p.add_argument("--batch-only", action="store_true",
                   help="ScreenBatch throughput only (no unary or stream sweeps, no h2load, no "
                        "kernels, memory or audit): service and baseline side by side")
    p.add_argument("--no-kernels", action="store_true", help="skip the kernel microbenchmarks")
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--no-audit", action="store_true",
                   help="skip the audit trail's cost per decision (audit on against off)")
    return p


def config_from_args(args: argparse.Namespace, argv: Sequence[str]) -> SuiteConfig:
    cfg = SuiteConfig(mode=args.mode, out_dir=args.out, **PRESETS[args.mode])
    cfg = with_overrides(
        cfg, sla_ms=args.sla_ms, duration_s=args.duration, warmup_s=args.warmup,
        unary_rates=args.rates, stream_rates=args.stream_rates,
        batch_duration_s=args.batch_duration, connections=args.connections,
        streams=args.streams, mix=args.mix, memory_accounts=args.memory_accounts,
        pool_size=args.pool_size,
        command=shlex.join(["python", "-m", "bench", *argv]))
    if args.batch_only:
        cfg = with_overrides(cfg, sweeps=False, kernels=False, memory_accounts=(), audit=False)
    if args.no_kernels:
        cfg = with_overrides(cfg, kernels=False)
    if args.no_memory:
        cfg = with_overrides(cfg, memory_accounts=())
    if args.no_audit:
        cfg = with_overrides(cfg, audit=False)
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from bench._suite import run_suite

    run_suite(config_from_args(args, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
