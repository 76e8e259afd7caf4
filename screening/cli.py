"""Command line: `screening serve | demo | token | policy | features | ...` (see --help)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from screening.case_cli import add_case_command
from screening.checkpoint_cli import add_checkpoint_command
from screening.errors import CheckpointError, ConfigError, InputFileError, StoreUnavailable

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> object:
    from screening.config import load_settings

    overrides: dict[str, dict[str, object]] = {
        "server": {"host": getattr(args, "host", None), "port": getattr(args, "port", None)},
        "policy": {"file": str(args.policy) if getattr(args, "policy", None) else None},
        "log": {"level": getattr(args, "log_level", None), "format": getattr(args, "log_format", None)},
    }
    if getattr(args, "no_auth", False):
        overrides["auth"] = {"enabled": False}
    if getattr(args, "tokens", None):
        overrides.setdefault("auth", {})["tokens_file"] = str(args.tokens)
    return load_settings(args.config, os.environ, overrides)


def _cmd_serve(args: argparse.Namespace) -> int:
    from screening.config import Settings
    from screening.logs import configure_logging
    from screening.server import serve_forever, start_server

    settings = _settings(args)
    assert isinstance(settings, Settings)
    masker = configure_logging(settings.log)
    running = start_server(settings, masker=masker)
    serve_forever(running, settings.server.grace_seconds)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from screening.demo import run_demo

    return run_demo(sys.stdout, args.log_dir)


def _cmd_token(args: argparse.Namespace) -> int:
    from screening.auth import add_token

    token = add_token(args.file, args.role, args.name)
    print(f"token for role {args.role} ({args.name}); shown once, only its hash is stored in "
          f"{args.file}:\n{token}")
    return 0


def _cmd_policy_check(args: argparse.Namespace) -> int:
    from screening.policy import load_policy

    policy = load_policy(args.file)
    print(f"{args.file or 'default policy'}: OK, version {policy.version}, "
          f"{len(policy.txn_rules)} transaction rules, {len(policy.call_rules)} call rules")
    return 0


def _cmd_policy_show(_args: argparse.Namespace) -> int:
    from screening.policy import default_policy_text

    sys.stdout.write(default_policy_text())
    return 0


def _cmd_features(_args: argparse.Namespace) -> int:
    from features.layout import ACCOUNT_FEATURES, CALL_FEATURES, TXN_FEATURES

    for title, names in (("transaction rules ([[rule]])", TXN_FEATURES),
                         ("call rules ([[call_rule]])", CALL_FEATURES),
                         ("QueryAccount features", ACCOUNT_FEATURES)):
        print(f"# {title}")
        for name in names:
            if not name.startswith("reserved_"):
                print(f"  {name}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    import time

    from screening.offline.memory import for_batch_jobs
    from screening.offline.synth import SynthConfig, generate, write

    for_batch_jobs()
    t0 = time.perf_counter()
    cfg = SynthConfig(seed=args.seed, events_target=args.events, days=args.days,
                      scenario_rate=args.scenario_rate, lookalike_rate=args.lookalike_rate)
    result = generate(cfg)
    gen_s = time.perf_counter() - t0
    paths = write(result, args.out, csv=args.csv)
    st = result.stats
    print(f"{st['events']:,} events ({st['txns']:,} transactions, {st['calls']:,} calls) for "
          f"{st['persons']:,} persons and {st['organisations']:,} organisations over {args.days} days "
          f"in {gen_s:.2f} s ({st['events'] / gen_s / 1e6:.2f} M events/s)")
    cases = {k.removeprefix("cases_"): v for k, v in st.items() if k.startswith("cases_")}
    print("planted cases: " + ", ".join(f"{k} {v}" for k, v in cases.items()
                                        if not k.startswith("lookalike_")))
    print("look-alikes: " + ", ".join(f"{k.removeprefix('lookalike_')} {v}" for k, v in cases.items()
                                      if k.startswith("lookalike_")))
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    import json

    import polars as pl
    from tqdm import tqdm

    from screening.config import Settings
    from screening.offline.backtest import backtest, format_metrics
    from screening.offline.events import read_events, write_frame
    from screening.offline.mapping import load_mapping
    from screening.offline.memory import for_batch_jobs
    from screening.offline.replay import read_watchlist, replay
    from screening.policy import load_policy

    for_batch_jobs()
    settings = _settings(args)
    assert isinstance(settings, Settings)
    mapping = load_mapping(args.mapping) if args.mapping else None
    events = read_events(args.events, mapping)
    watch = read_watchlist(args.watchlist) if args.watchlist else None
    accounts = None
    labels_file = args.accounts or (args.events.parent / "accounts.parquet")
    if "scenario" in events.columns and labels_file.exists():
        accounts = pl.read_parquet(labels_file)
    policies = {"policy": args.policy} | ({"compare": args.compare} if args.compare else {})
    metrics = {}
    for name, path in policies.items():
        policy = load_policy(path)
        with tqdm(total=events.height, unit="ev", unit_scale=True, desc=policy.version,
                  disable=args.no_progress or None, file=sys.stderr) as bar:
            result = replay(events, policy, settings, origin=str(args.events), watchlist=watch,
                            chunk_size=args.chunk, progress=bar.update)
        d = result.decisions
        counts = d.group_by("action").len().sort("len", descending=True)
        graph = (f", graph detectors {result.graph_events_per_second / 1e6:.2f} M events/s"
                 if result.graph_seconds else "")
        print(f"{policy.version}: {d.height:,} events in {result.total_seconds:.2f} s; features + "
              f"policy {result.events_per_second / 1e6:.2f} M events/s on one core{graph}")
        print("  " + ", ".join(f"{a} {n:,}" for a, n in counts.iter_rows()))
        if name == "policy" and args.out:
            write_frame(d, args.out)
            print(f"  decisions -> {args.out}")
        if "scenario" in events.columns:
            metrics[policy.version] = backtest(events, d, accounts)
    if metrics:
        print()
        print(format_metrics(metrics))
        if args.metrics:
            args.metrics.write_text(json.dumps({k: m.as_dict() for k, m in metrics.items()},
                                               indent=2, default=str))
            print(f"metrics -> {args.metrics}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from screening.config import Settings
    from screening.offline.events import read_events
    from screening.offline.mapping import load_mapping
    from screening.offline.memory import for_batch_jobs
    from screening.offline.replay import replay
    from screening.offline.reports import (
        large_value_report,
        load_thresholds,
        read_decisions,
        suspicious_report,
        write_report,
    )
    from screening.policy import load_policy

    for_batch_jobs()
    settings = _settings(args)
    assert isinstance(settings, Settings)
    mapping = load_mapping(args.mapping) if args.mapping else None
    events = read_events(args.events, mapping)
    if args.report_command == "large-value":
        thresholds = load_thresholds(args.thresholds)
        frame = large_value_report(events, thresholds, settings, institutions=args.institution,
                                   origin=str(args.events))
        what = "large-value rows"
    else:
        policy = load_policy(args.policy)
        if args.decisions:
            decisions = read_decisions(args.decisions)
        else:
            decisions = replay(events, policy, settings, origin=str(args.events)).decisions
        frame = suspicious_report(decisions, events, policy, settings=settings,
                                  origin=str(args.decisions or "replay"),
                                  events_origin=str(args.events))
        what = "suspicious-transaction cases"
    paths = write_report(frame, args.out, formats=args.formats.split(","))
    print(f"{frame.height:,} {what} -> " + ", ".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="screening",
        description="Transaction screening against telecom fraud and illegal fundraising: "
                    "a gRPC service with streaming features, graph patterns and police exports.",
    )
    parser.add_argument("--config", type=Path, default=None,
                        help="settings TOML (else $SCREENING_CONFIG); env SCREENING_<SECTION>__<KEY> "
                             "overrides single keys")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gRPC server until SIGTERM (state in memory, or "
                                     "checkpointed to the [storage] store)")
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 50051; 0 = any free)")
    p.add_argument("--policy", type=Path, default=None, help="policy TOML (default: shipped policy)")
    p.add_argument("--tokens", type=Path, default=None, help="tokens file (sha256 -> role)")
    p.add_argument("--no-auth", action="store_true",
                   help="treat every caller as admin (local development only)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None)
    p.add_argument("--log-format", choices=("json", "console"), default=None)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("demo", help="start a server and play a scripted day of fraud scenarios")
    p.add_argument("--log-dir", type=Path, default=None, help="where the server log goes")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("token", help="manage caller tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = tsub.add_parser("create", help="create a token for a role; prints it once")
    t.add_argument("--role", required=True,
                   choices=("bank", "payment", "telecom", "police", "regulator", "admin"))
    t.add_argument("--name", required=True, help="who holds it (shows in audit logs)")
    t.add_argument("--file", type=Path, default=Path("tokens.toml"), help="tokens file")
    t.set_defaults(func=_cmd_token)

    p = sub.add_parser("policy", help="check or print a policy file")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="validate a policy file (names the line of a problem)")
    c.add_argument("file", type=Path, nargs="?", default=None)
    c.set_defaults(func=_cmd_policy_check)
    s = psub.add_parser("show", help="print the default policy (a starting point for your own)")
    s.set_defaults(func=_cmd_policy_show)

    p = sub.add_parser("features", help="list the feature names rules can use")
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("synth", help="write a labelled synthetic event stream (Parquet, CSV)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--events", type=int, default=100_000, help="about this many events")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scenario-rate", type=float, default=0.01,
                   help="share of persons drawn into planted fraud scenarios")
    p.add_argument("--lookalike-rate", type=float, default=0.005,
                   help="share of persons at the centre of a benign look-alike (shop owner, "
                        "employer, courier, ...)")
    p.add_argument("--csv", action="store_true", help="also write CSV")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("replay", help="run an event file through the features and policy "
                                      "(batch, event-time order); backtest when labelled")
    p.add_argument("events", type=Path, help="events .parquet or .csv (or any file with --mapping)")
    p.add_argument("--policy", type=Path, default=None, help="policy TOML (default: shipped)")
    p.add_argument("--compare", type=Path, default=None, help="second policy, side by side")
    p.add_argument("--mapping", default=None,
                   help="column mapping TOML for other people's files, or a built-in: amlsim")
    p.add_argument("--watchlist", type=Path, default=None,
                   help="CSV/Parquet with kind,value[,expires_at] applied before the replay")
    p.add_argument("--accounts", type=Path, default=None,
                   help="per-account labels (default: accounts.parquet beside the events)")
    p.add_argument("--out", type=Path, default=None, help="decisions .parquet or .csv")
    p.add_argument("--metrics", type=Path, default=None, help="backtest metrics as JSON")
    p.add_argument("--chunk", type=int, default=1 << 16, help="events per kernel call")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("report", help="regulatory reports from an event file (CSV and Parquet)")
    rsub = p.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    for name, help_text in (
        ("large-value", "large-value transaction report: per customer per local day, at or over "
                        "the lines of the thresholds file"),
        ("suspicious", "suspicious-transaction cases with reason codes and a narrative (replays "
                       "the events with --policy unless --decisions is given)"),
    ):
        r = rsub.add_parser(name, help=help_text)
        r.add_argument("events", type=Path, help="events .parquet or .csv")
        r.add_argument("--out", type=Path, required=True,
                       help="output path without suffix: writes OUT.csv and OUT.parquet")
        r.add_argument("--formats", default="csv,parquet", help="csv, parquet or both")
        r.add_argument("--mapping", default=None, help="column mapping TOML, or: amlsim")
        if name == "large-value":
            r.add_argument("--thresholds", type=Path, default=None,
                           help="report lines TOML, or a policy file (default: shipped lines)")
            r.add_argument("--institution", action="append", default=None,
                           help="report only customers of this institution (repeatable)")
        else:
            r.add_argument("--policy", type=Path, default=None, help="policy TOML")
            r.add_argument("--decisions", type=Path, default=None,
                           help="decisions of an earlier `screening replay --out`")
        r.set_defaults(func=_cmd_report)
    add_case_command(sub)
    add_checkpoint_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (ConfigError, InputFileError, StoreUnavailable, CheckpointError) as exc:
        print(f"screening: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
