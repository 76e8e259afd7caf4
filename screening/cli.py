"""Command line: `screening serve | demo | token | policy | features | ...` (see --help)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from screening.audit_cli import add_audit_command
from screening.case_cli import add_case_command
from screening.checkpoint_cli import add_checkpoint_command
from screening.errors import CheckpointError, ConfigError, InputFileError, StoreUnavailable
from screening.remote_cli import add_client_options, connect, rpc_failure

if TYPE_CHECKING:
    import polars as pl

    from screening.config import Settings
    from screening.offline.reports import ReportThresholds

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> object:
    from screening.config import load_settings

    return load_settings(args.config, os.environ, _flag_overrides(args))


def _flag_overrides(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """The settings the command line sets (None: not given), as ``serve`` applies them."""
    overrides: dict[str, dict[str, object]] = {
        "server": {"host": getattr(args, "host", None), "port": getattr(args, "port", None)},
        "policy": {"file": str(args.policy) if getattr(args, "policy", None) else None},
        "log": {"level": getattr(args, "log_level", None), "format": getattr(args, "log_format", None)},
        "metrics": {"port": getattr(args, "metrics_port", None)},
        "flight": {"port": getattr(args, "flight_port", None)},
    }
    if getattr(args, "no_auth", False):
        overrides["auth"] = {"enabled": False}
    if getattr(args, "allow_insecure_bind", False):
        overrides.setdefault("auth", {})["allow_insecure_bind"] = True
    if getattr(args, "tokens", None):
        overrides.setdefault("auth", {})["tokens_file"] = str(args.tokens)
    tls = {"cert_file": getattr(args, "tls_cert", None), "key_file": getattr(args, "tls_key", None),
           "client_ca_file": getattr(args, "tls_client_ca", None),
           "crl_file": getattr(args, "tls_crl", None)}
    if getattr(args, "allow_plaintext", False):
        tls["allow_plaintext"] = True
    overrides["tls"] = {k: str(v) if isinstance(v, Path) else v for k, v in tls.items()}
    return overrides


def _cmd_serve(args: argparse.Namespace) -> int:
    from screening.config import Settings
    from screening.logs import configure_logging
    from screening.server import serve_forever, start_server

    settings = _settings(args)
    assert isinstance(settings, Settings)
    masker = configure_logging(settings.log)
    running = start_server(settings, masker=masker)
    try:
        serve_forever(running, settings.server.grace_seconds)
    except StoreUnavailable as exc:  # another server took the store: stopped, exit 2
        if not running.stuck:
            raise
        print(f"screening: {exc}", file=sys.stderr)
        _leave(2)
    if running.stuck:
        _leave(0)
    return 0


def _leave(code: int) -> NoReturn:
    """Exit now: calls a client keeps open hold threads the interpreter would wait for at exit;
    the server has stopped (and written its last checkpoint), so leave without them."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cmd_config_show(args: argparse.Namespace) -> int:
    from screening.config import Settings, render_settings, settings_sources

    settings = _settings(args)
    assert isinstance(settings, Settings)
    print(render_settings(settings, settings_sources(args.config, os.environ, _flag_overrides(args))),
          end="")
    return 0


def _cmd_shadow_report(args: argparse.Namespace) -> int:
    from screening.shadow import report

    try:
        print(report(args.log), end="")
    except ValueError as exc:  # names the file and line
        raise InputFileError(str(exc)) from None
    except (OSError, KeyError) as exc:
        raise InputFileError(f"{args.log}: cannot be read as a shadow log ({exc})") from None
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from screening._warm import STEPS, KernelInputs, cold_steps, warm_up
    from screening.config import Settings
    from screening.demo import WarmProgress
    from screening.policy import load_policy

    settings = _settings(args)
    assert isinstance(settings, Settings)
    policy = load_policy(settings.policy.file)
    # every kernel, the graph's too: a server started later with the graph off uses fewer
    inputs = KernelInputs(policy.params_array, policy.txn_table, policy.call_table,
                          settings.graph.params().array())
    cold = len(cold_steps(list(STEPS)))
    if cold == 0:
        print(f"all {len(STEPS)} kernel steps are in numba's cache already: nothing to compile")
        return 0
    print(f"compiling the screening kernels into numba's on-disk cache ({cold} of {len(STEPS)} "
          "steps missing): a server, the demo or a replay started after this loads them in "
          "seconds", flush=True)
    progress = WarmProgress(sys.stdout)
    took = warm_up(inputs, progress)
    progress.done()
    print(f"compiled in {took:.1f} s")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from screening.demo import run_demo

    return run_demo(sys.stdout, args.log_dir)


def _cmd_token(args: argparse.Namespace) -> int:
    from screening.auth import add_token

    token = add_token(args.file, args.role, args.name, args.institution or "")
    # the token alone on stdout, so TOKEN=$(screening token create ...) captures just it
    print(f"token for role {args.role} ({args.name}); shown once, only its hash is stored in "
          f"{args.file}", file=sys.stderr)
    print(token)
    return 0


def _cmd_token_list(args: argparse.Namespace) -> int:
    from screening.auth import read_tokens

    entries = read_tokens(args.file)
    if not args.all:
        entries = [e for e in entries if not e.revoked]
    rows = [("ID", "ROLE", "NAME", "INSTITUTION", "CREATED", "REVOKED")]
    rows += [(e.id, e.role, repr(e.name)[1:-1], e.institution, e.created, e.revoked or "-")
             for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    from screening.auth import revoke_token

    entry = revoke_token(args.file, args.id)
    print(f"revoked token {entry.id} ({entry.role}, {entry.name!r}) in {args.file}; a running "
          f"server refuses it within {_reload_poll_s():g} s (or at once on SIGHUP)")
    return 0


def _cmd_token_rotate(args: argparse.Namespace) -> int:
    from screening.auth import rotate_token

    token, old, new = rotate_token(args.file, args.id)
    print(f"token {old.id} ({old.role}, {old.name!r}) revoked, replaced by {new.id}; the new "
          f"token is shown once, only its hash is stored in {args.file}; a running server "
          f"switches within {_reload_poll_s():g} s (or at once on SIGHUP)", file=sys.stderr)
    print(token)
    return 0


def _reload_poll_s() -> float:
    from screening.server import RELOAD_POLL_S

    return RELOAD_POLL_S


def _cmd_certs_revoke(args: argparse.Namespace) -> int:
    from screening.certs import revoke_certificates

    serials = revoke_certificates(args.dir, args.certificates)
    print(f"{args.dir / 'crl.pem'}: {len(serials)} certificate(s) revoked: "
          + ", ".join(f"{s:x}" for s in serials))
    return 0


def _cmd_certs_dev(args: argparse.Namespace) -> int:
    from screening.certs import make_dev_certificates

    paths = make_dev_certificates(args.out, hosts=args.host or ("localhost", "127.0.0.1"),
                                  days=args.days)
    print(f"a development CA and certificates in {args.out} (keys 0600; valid {args.days} "
          "days; not for production: the CA key is beside them):")
    for path in paths:
        print(f"  {path}")
    print(f"serve:  screening serve --tls-cert {args.out / 'server.pem'} --tls-key "
          f"{args.out / 'server.key'} --tls-client-ca {args.out / 'ca.pem'} --tls-crl "
          f"{args.out / 'crl.pem'}")
    print(f"call:   --tls-ca {args.out / 'ca.pem'} --tls-cert {args.out / 'client-police.pem'} "
          f"--tls-key {args.out / 'client-police.key'}")
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

    from screening.config import Settings
    from screening.offline.backtest import backtest, format_metrics
    from screening.offline.events import read_events, write_frame
    from screening.offline.mapping import load_mapping, read_mapped_registry
    from screening.offline.memory import for_batch_jobs
    from screening.offline.progress import progress
    from screening.offline.replay import read_registry, read_watchlist, replay
    from screening.policy import load_policy

    for_batch_jobs()
    settings = _settings(args)
    assert isinstance(settings, Settings)
    mapping = load_mapping(args.mapping) if args.mapping else None
    events = read_events(args.events, mapping)
    watch = read_watchlist(args.watchlist) if args.watchlist else None
    registry_file = args.registry or (args.events.parent / "registry.parquet")
    registry = None
    if args.registry and mapping is not None and mapping.registry is not None:
        registry = read_mapped_registry(args.registry, mapping)
    elif args.registry or registry_file.exists():
        registry = read_registry(registry_file)
    if registry is not None:
        print(f"account registry: {registry.height:,} accounts from {registry_file}")
    accounts = None
    labels_file = args.accounts or (args.events.parent / "accounts.parquet")
    if "scenario" in events.columns and labels_file.exists():
        accounts = pl.read_parquet(labels_file)
    policies = {"policy": args.policy} | ({"compare": args.compare} if args.compare else {})
    metrics = {}
    for name, path in policies.items():
        policy = load_policy(path)
        # a bar on a terminal; where stderr is a file or a pipe, a line every 10 s
        with progress(events.height, policy.version, sys.stderr,
                      enabled=not args.no_progress) as bar:
            result = replay(events, policy, settings, origin=str(args.events), watchlist=watch,
                            chunk_size=args.chunk, progress=bar.update, registry=registry)
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
        if name == "policy" and args.checkpoint_out:
            print(f"  checkpoint -> {_write_warm_checkpoint(result, policy, settings, watch, args)}")
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


def _write_warm_checkpoint(result: object, policy: object, settings: object, watch: object,
                           args: argparse.Namespace) -> str:
    """The replay's end state as a file-store checkpoint a server restores (start warm)."""
    from screening.model import NEVER, WatchEntry
    from screening.offline.replay import ReplayResult, replay_snapshot
    from screening.store import FileStore, encode

    assert isinstance(result, ReplayResult)
    entries: list[WatchEntry] = []
    if watch is not None:
        kinds = {"account": 1, "phone": 2, "device": 3}
        for row in watch.iter_rows(named=True):  # type: ignore[attr-defined]
            entries.append(WatchEntry(kinds[row["kind"]], str(row["value"]),
                                      str(row.get("reason") or "watchlist file"),
                                      str(row.get("source") or "replay"), NEVER))
    snap = replay_snapshot(result, policy, settings, entries)  # type: ignore[arg-type]
    store = FileStore(args.checkpoint_out, create=True)
    try:
        return store.write_checkpoint(encode(snap).pieces)
    finally:
        store.close()


def _cmd_accounts_load(args: argparse.Namespace) -> int:
    import grpc

    from screening.offline.replay import read_registry, registry_profiles
    from screening.v1 import screening_pb2 as pb

    if args.mapping:
        from screening.offline.mapping import load_mapping, read_mapped_registry

        registry = read_mapped_registry(args.file, load_mapping(args.mapping))
    else:
        registry = read_registry(args.file)
    rows = registry_profiles(registry)
    party: dict[str, int] = {"person": pb.PARTY_TYPE_PERSON,
                             "organisation": pb.PARTY_TYPE_ORGANISATION}
    types = registry.get_column("party_type").to_list()
    categories = registry.get_column("merchant_category").fill_null("").to_list()
    payroll = registry.get_column("payroll").fill_null(False).to_list()
    owners = registry.get_column("institution").to_list()  # each entry's owner
    dates = {c: registry.get_column(c).cast(str).fill_null("").to_list()
             for c in ("opened_date", "last_active_date")}
    sent = 0
    with connect(args, args.server, timeout=60.0) as client:
        for lo in range(0, len(rows), args.chunk):
            profiles = [
                pb.AccountProfile(account_id=rows[i][0],
                                  party_type=party.get(types[i] or "", 0),  # type: ignore[arg-type]
                                  opened_date=dates["opened_date"][i],
                                  last_active_date=dates["last_active_date"][i],
                                  merchant_category=categories[i], payroll=bool(payroll[i]),
                                  phone=rows[i][4], institution=owners[i])
                for i in range(lo, min(lo + args.chunk, len(rows)))]
            try:
                sent += client.upsert_accounts(profiles).upserted
            except grpc.RpcError as exc:
                print(rpc_failure(args, args.server, exc), file=sys.stderr)
                return 1
    print(f"{sent:,} accounts upserted to {args.server}")
    return 0


def _cmd_mapping_check(args: argparse.Namespace) -> int:
    from screening.config import Settings
    from screening.offline.mapping import check_mapping, format_report, load_mapping

    settings = _settings(args)
    assert isinstance(settings, Settings)
    mapping = load_mapping(args.mapping)
    if args.registry is not None and mapping.registry is None:
        raise ConfigError(f"--registry: mapping {mapping.origin} has no [registry] tables")
    reports = check_mapping(args.events, mapping, settings, registry=args.registry)
    print("\n\n".join(format_report(r) for r in reports))
    return 0 if all(r.ok for r in reports) else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from screening.config import Settings
    from screening.offline.events import read_events
    from screening.offline.mapping import load_mapping
    from screening.offline.memory import for_batch_jobs
    from screening.offline.replay import replay
    from screening.offline.reports import (
        format_large_value,
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
    large = args.report_command == "large-value"
    sources = [s for s in ("events", "server", "checkpoint") if getattr(args, s, None)]
    if len(sources) != 1:
        raise ConfigError("give one source: an events file" + (", --server HOST:PORT or "
                          "--checkpoint PATH" if large else ""))
    if large and (args.date is None) != (sources[0] == "events"):
        raise ConfigError("--date YYYY-MM-DD goes with --server or --checkpoint (one local day "
                          "of the report ledger); an events file is reported whole")
    if large and args.server:
        frame = _large_value_from_server(args)
        if frame is None:
            return 1
        what = f"large-value rows of {args.date} from {args.server}"
    elif large and args.checkpoint:
        frame = _large_value_from_checkpoint(args, settings, load_thresholds(args.thresholds))
        what = f"large-value rows of {args.date} from the ledger in {args.checkpoint}"
    elif large:
        mapping = load_mapping(args.mapping) if args.mapping else None
        events = read_events(args.events, mapping)
        thresholds = load_thresholds(args.thresholds)
        frame = large_value_report(events, thresholds, settings, institutions=args.institution,
                                   origin=str(args.events))
        what = "large-value rows"
    else:
        mapping = load_mapping(args.mapping) if args.mapping else None
        events = read_events(args.events, mapping)
        policy = load_policy(args.policy)
        if args.decisions:
            decisions = read_decisions(args.decisions)
        else:
            decisions = replay(events, policy, settings, origin=str(args.events)).decisions
        frame = suspicious_report(decisions, events, policy, settings=settings,
                                  origin=str(args.decisions or "replay"),
                                  events_origin=str(args.events))
        what = "suspicious-transaction cases"
    stem = "large_value" if large else "suspicious"
    if large and args.date:
        stem += f"_{args.date}"
    out = args.out / stem if args.out.is_dir() else args.out
    paths = write_report(frame, out, formats=args.formats.split(","))
    print(f"{frame.height:,} {what} -> " + ", ".join(str(p) for p in paths))
    if large and args.show > 0 and frame.height:
        print(format_large_value(frame, limit=args.show))
    return 0


def _large_value_from_server(args: argparse.Namespace) -> pl.DataFrame | None:
    """The report of ``args.date`` through GetLargeValueReport; None (and a line) on an error."""
    import grpc

    from screening.convert import large_value_frame

    with connect(args, args.server) as client:
        try:
            msg = client.large_value_report(args.date, args.institution or ())
        except grpc.RpcError as exc:
            print(rpc_failure(args, args.server, exc), file=sys.stderr)
            return None
    if msg.identifiers_masked:
        print("note: account numbers are masked for this token's role", file=sys.stderr)
    return large_value_frame(msg)


def _large_value_from_checkpoint(args: argparse.Namespace, settings: Settings,
                                 thresholds: ReportThresholds) -> pl.DataFrame:
    """The report of ``args.date`` from the ledger in a file-store checkpoint (a store
    directory or the checkpoint file), read and checked as a restoring server would."""
    import dataclasses

    from screening.ledger import Ledger, parse_day
    from screening.offline.reports import large_value_rows
    from screening.store import FileStore, decode_ledger, open_checkpoint_file

    day = parse_day(args.date)
    if day is None:
        raise ConfigError(f"--date: {args.date!r} is not a date YYYY-MM-DD")
    path = Path(args.checkpoint)
    if path.is_dir():
        reader = FileStore(path, create=False).open_checkpoint()
        if reader is None:
            raise CheckpointError(f"file {path}: no checkpoint in this store")
    else:
        reader = open_checkpoint_file(path)
    with reader:
        header, saved, accounts = decode_ledger(reader)
    if saved is None:
        raise CheckpointError(f"checkpoint {header.where}: holds no report ledger (written by an "
                              "earlier build)")
    tz = int(saved.meta[0])
    try:
        ledger, _ = Ledger.restored(saved, days=366, max_rows=2**31, tz_offset_hours=tz,
                                    n_accounts=len(accounts))
    except ValueError as exc:
        raise CheckpointError(f"checkpoint {header.where}: does not fit this build: {exc}") from None
    view = ledger.view(day)
    if not view.covered:
        raise InputFileError(f"checkpoint {header.where}: --date {view.uncovered()}")
    # the ledger's days are the server's: counted at the time zone it saved
    return large_value_rows(view.frame(accounts.__getitem__),
                            dataclasses.replace(thresholds, timezone_offset_hours=tz), settings,
                            institutions=args.institution)


class _Parser(argparse.ArgumentParser):
    """A parser that takes the global options (--config, --version) itself and gives them to
    every subcommand's parser it creates, so `screening serve --config x.toml` works as well as
    `screening --config x.toml serve`.

    The subcommands' copies default to SUPPRESS: a subcommand not given the option leaves the
    value parsed before it (or the top-level default) in place."""

    def __init__(self, *args: Any, top: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--config", type=Path, default=None if top else argparse.SUPPRESS,
                          help="settings TOML (else $SCREENING_CONFIG); env "
                               "SCREENING_<SECTION>__<KEY> overrides single keys")
        self.add_argument("--version", action="version", version=f"screening {_version()}",
                          help="print the version of screening and exit")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("screening")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _cmd_flight_screen(args: argparse.Namespace) -> int:
    try:
        from screening.flight_client import FlightScreeningClient, screen_file
    except ImportError as exc:
        raise ConfigError(f"pyarrow.flight cannot be imported ({exc}): install the flight "
                          "extra (pip install 'screening[flight]')") from None
    from screening.offline.events import write_frame

    token = args.token or os.environ.get("SCREENING_TOKEN")
    ca = args.tls_ca.read_bytes() if args.tls_ca else None
    out = args.out or args.file.with_name(args.file.stem + ".decisions.parquet")
    with FlightScreeningClient(args.server, token, tls_ca=ca) as client:
        decisions = screen_file(client, args.file, rows=args.batch_rows)
    write_frame(decisions, out)
    counts = decisions["action"].value_counts(sort=True).rows() if decisions.height else []
    print(f"{decisions.height} decisions -> {out} ("
          + ", ".join(f"{a} {n}" for a, n in counts) + ")")
    return 0


def _serve_flags(p: argparse.ArgumentParser) -> None:
    """``serve``'s settings flags (``config show`` takes them too)."""
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 50051; 0 = any free)")
    p.add_argument("--policy", type=Path, default=None, help="policy TOML (default: shipped policy)")
    p.add_argument("--tokens", type=Path, default=None, help="tokens file (sha256 -> role)")
    p.add_argument("--no-auth", action="store_true",
                   help="treat every caller as admin (local development only; loopback "
                        "addresses only unless --allow-insecure-bind)")
    p.add_argument("--allow-insecure-bind", action="store_true",
                   help="with --no-auth, listen on a non-loopback --host anyway")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="FILE",
                   help="TLS: the server's certificate chain, PEM (with --tls-key; default: "
                        "[tls] cert_file)")
    p.add_argument("--tls-key", type=Path, default=None, metavar="FILE",
                   help="TLS: the server's private key, PEM (default: [tls] key_file)")
    p.add_argument("--tls-client-ca", type=Path, default=None, metavar="FILE",
                   help="mutual TLS: CA certificates (PEM) that sign the clients' certificates; "
                        "every client must present one, whose OU is its role (default: [tls] "
                        "client_ca_file)")
    p.add_argument("--tls-crl", type=Path, default=None, metavar="FILE",
                   help="mutual TLS: a certificate revocation list (PEM) of --tls-client-ca; the "
                        "client certificates it lists are refused; re-read when it changes "
                        "(default: [tls] crl_file)")
    p.add_argument("--allow-plaintext", action="store_true",
                   help="without TLS, listen on a non-loopback --host anyway (a proxy in front "
                        "terminates TLS)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None,
                   help="log level (default: [log] level, info)")
    p.add_argument("--log-format", choices=("json", "console"), default=None,
                   help="json lines for machines or console for people, on stderr (default: "
                        "[log] format, json)")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus metrics on this port (default: [metrics] port, 0 = off)")
    p.add_argument("--flight-port", type=int, default=None, metavar="PORT",
                   help="also serve bulk screening over Arrow Flight on this port (0: any free "
                        "port, logged; default: [flight] port, -1 = off)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="screening", top=True,
        description="Transaction screening against telecom fraud and illegal fundraising: "
                    "a gRPC service with streaming features, graph patterns and police exports.",
    )
    # subparsers are made by type(parser): each (at every level) takes the global options too
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gRPC server until SIGTERM (state in memory, or "
                                     "checkpointed to the [storage] store)")
    _serve_flags(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("config", help="the settings a server would run with")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    c = csub.add_parser("show", help="print the effective settings (defaults < --config file < "
                                     "SCREENING_* environment < flags) as TOML, each changed "
                                     "value with its source, secrets masked")
    _serve_flags(c)  # the same flags as serve, so it shows what that serve would run with
    c.set_defaults(func=_cmd_config_show)

    p = sub.add_parser("shadow", help="shadow policies: what candidate policies would have done")
    ssub = p.add_subparsers(dest="shadow_command", required=True, metavar="ACTION")
    c = ssub.add_parser("report", help="compare each shadow policy with the active one from a "
                                       "shadow log ([policy] shadow_log): alerts, overlap, "
                                       "money stopped, calls warned and blocked, by rule")
    c.add_argument("log", type=Path, help="the shadow log (JSON lines)")
    c.set_defaults(func=_cmd_shadow_report)

    what = ("compile the Numba kernels into numba's on-disk cache now (once after installing: "
            "the first start then loads them in seconds instead of compiling for most of a minute)")
    p = sub.add_parser("compile", help=what, description=what[0].upper() + what[1:] + ".")
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("demo", help="start a server and play a scripted day of fraud scenarios")
    p.add_argument("--log-dir", type=Path, default=None, help="where the server log goes")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("token", help="manage caller tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    t = tsub.add_parser("create", help="create a token for a role; prints it once (the token "
                                        "alone on stdout, a note on stderr)")
    t.add_argument("--role", required=True,
                   choices=("bank", "payment", "telecom", "police", "regulator", "admin"),
                   help="what the token may call (README: \"Who may call what\")")
    t.add_argument("--name", required=True, help="who holds it (shows in audit logs)")
    t.add_argument("--file", type=Path, default=Path("tokens.toml"), help="tokens file")
    t.add_argument("--institution", default=None,
                   help="bank and payment tokens: the institution code it reports for (its "
                        "customers' large-value reports, GetLargeValueReport)")
    t.set_defaults(func=_cmd_token)
    t = tsub.add_parser("list", help="the tokens of a tokens file: id, role, name, institution, "
                                      "created, revoked (never a secret: the file holds none)")
    t.add_argument("--file", type=Path, default=Path("tokens.toml"), help="tokens file")
    t.add_argument("--all", action="store_true", help="revoked tokens too")
    t.set_defaults(func=_cmd_token_list)
    t = tsub.add_parser("revoke", help="revoke a token (it stays listed); a running server "
                                        "refuses it once it re-read the file (within seconds, "
                                        "or at once on SIGHUP)")
    t.add_argument("id", help="the token's id from `token list` (or a unique prefix, 8 or more "
                              "characters)")
    t.add_argument("--file", type=Path, default=Path("tokens.toml"), help="tokens file")
    t.set_defaults(func=_cmd_token_revoke)
    t = tsub.add_parser("rotate", help="a new token for the holder of a token (same role, name "
                                        "and institution), the old one revoked; prints the new "
                                        "one once (alone on stdout)")
    t.add_argument("id", help="the token's id from `token list` (or a unique prefix)")
    t.add_argument("--file", type=Path, default=Path("tokens.toml"), help="tokens file")
    t.set_defaults(func=_cmd_token_rotate)

    p = sub.add_parser("certs", help="certificates for TLS and mutual TLS")
    xsub = p.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    x = xsub.add_parser("dev", help="a local CA, a server certificate and a client certificate "
                                     "per role (OU = role, CN = dev-ROLE; bank and payment with "
                                     "O = BANK01, PAY01), for tests and development")
    x.add_argument("--out", type=Path, required=True, help="directory to write them into")
    x.add_argument("--host", action="append", default=None,
                   help="a name or address the server certificate is for (repeatable; default: "
                        "localhost and 127.0.0.1)")
    x.add_argument("--days", type=int, default=30, help="validity in days (default 30)")
    x.set_defaults(func=_cmd_certs_dev)
    x = xsub.add_parser("revoke", help="add client certificates to the dev CA's revocation list "
                                        "(DIR/crl.pem, for serve --tls-crl); a server reading it "
                                        "refuses them within seconds")
    x.add_argument("certificates", type=Path, nargs="+", help="client certificate files (PEM)")
    x.add_argument("--dir", type=Path, required=True,
                   help="the directory `certs dev` wrote (its ca.pem, ca.key, crl.pem)")
    x.set_defaults(func=_cmd_certs_revoke)

    p = sub.add_parser("policy", help="check or print a policy file")
    psub = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="validate a policy file (names the line of a problem)")
    c.add_argument("file", type=Path, nargs="?", default=None,
                   help="policy TOML (default: the shipped policy)")
    c.set_defaults(func=_cmd_policy_check)
    s = psub.add_parser("show", help="print the default policy (a starting point for your own)")
    s.set_defaults(func=_cmd_policy_show)

    p = sub.add_parser("features", help="list the feature names rules can use")
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("synth", help="write a labelled synthetic event stream (Parquet, CSV)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--events", type=int, default=100_000, help="about this many events")
    p.add_argument("--days", type=int, default=30, help="days of events, 7..3660 (default 30)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed; the same seed and options write the same files (default 0)")
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
                   help="column mapping TOML for other people's files, or a built-in: amlsim, "
                        "synth, bank_export (check one first: screening mapping check)")
    p.add_argument("--watchlist", type=Path, default=None,
                   help="CSV/Parquet with kind,value[,expires_at] applied before the replay")
    p.add_argument("--accounts", type=Path, default=None,
                   help="per-account labels (default: accounts.parquet beside the events)")
    p.add_argument("--out", type=Path, default=None, help="decisions .parquet or .csv")
    p.add_argument("--metrics", type=Path, default=None, help="backtest metrics as JSON")
    p.add_argument("--registry", type=Path, default=None,
                   help="account registry .parquet/.csv, read through --mapping's [registry] "
                        "tables when it has them (default: registry.parquet beside the events, "
                        "when there)")
    p.add_argument("--checkpoint-out", type=Path, default=None,
                   help="write the state the replay ends with as a checkpoint in this folder "
                        "(a server with [storage] backend = \"file\", path = it, starts warm)")
    p.add_argument("--chunk", type=int, default=1 << 16, help="events per kernel call")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress on stderr (a bar on a terminal, else a line every 10 s)")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("mapping", help="column mappings for other people's files")
    msub = p.add_subparsers(dest="mapping_command", required=True, metavar="ACTION")
    m = msub.add_parser("check", help="read a file through a mapping and report per column what "
                                      "maps and what does not (unmapped values with counts, empty "
                                      "required cells, bad times), then the replay's own checks; "
                                      "exit 1 on any problem")
    m.add_argument("mapping", help="mapping TOML, or a built-in: amlsim, synth, bank_export")
    m.add_argument("--events", type=Path, required=True, help="the events file")
    m.add_argument("--registry", type=Path, default=None,
                   help="an account registry file, read through the mapping's [registry] tables")
    m.set_defaults(func=_cmd_mapping_check)

    p = sub.add_parser("accounts", help="the account registry (what a bank knows of its accounts)")
    asub = p.add_subparsers(dest="accounts_command", required=True)
    a = asub.add_parser("load", help="send a registry file to a running server (UpsertAccounts); "
                        "each row's institution owns its entry: a bank or payment token loads "
                        "its own institution's rows only, an admin token any")
    a.add_argument("file", type=Path, help="registry .parquet or .csv (account, institution, "
                   "party_type, opened_date, last_active_date, merchant_category, payroll, phone)")
    a.add_argument("--server", default="localhost:50051", help="host:port of the server")
    add_client_options(a, "bearer token of a bank, payment or admin caller")
    a.add_argument("--chunk", type=int, default=1000, help="accounts per request")
    a.add_argument("--mapping", default=None,
                   help="read FILE through this mapping's [registry] tables (e.g. bank_export)")
    a.set_defaults(func=_cmd_accounts_load)

    p = sub.add_parser("flight", help="bulk screening over Arrow Flight ([flight] port)")
    fsub = p.add_subparsers(dest="flight_command", required=True, metavar="ACTION")
    f = fsub.add_parser("screen", help="send the transactions of an events file (.parquet or "
                                       ".csv, the replay schema) in record batches and write the "
                                       "decisions")
    f.add_argument("file", type=Path, help="events file (.parquet or .csv)")
    f.add_argument("--server", default="grpc://localhost:50052",
                   help="the Flight endpoint, grpc://HOST:PORT (grpc+tls:// with a certificate)")
    f.add_argument("--token", default=None,
                   help="bearer token of a bank, payment or admin caller (default: "
                        "$SCREENING_TOKEN)")
    f.add_argument("--tls-ca", type=Path, default=None, metavar="FILE",
                   help="with grpc+tls://: the CA certificates (PEM) to trust for the server")
    f.add_argument("--batch-rows", type=int, default=10_000, help="transactions per record batch")
    f.add_argument("--out", type=Path, default=None,
                   help="decisions file (.parquet or .csv; default: FILE's name + "
                        ".decisions.parquet)")
    f.set_defaults(func=_cmd_flight_screen)

    p = sub.add_parser("report", help="regulatory reports from an event file, or from a server's "
                                      "report ledger (CSV and Parquet)")
    rsub = p.add_subparsers(dest="report_command", required=True, metavar="REPORT")
    for name, help_text in (
        ("large-value", "large-value transaction report: per customer per local day, at or over "
                        "the lines of the thresholds file; from an events file, or one day of a "
                        "server's report ledger (--server, or --checkpoint of a file store)"),
        ("suspicious", "suspicious-transaction cases with reason codes and a narrative (replays "
                       "the events with --policy unless --decisions is given)"),
    ):
        r = rsub.add_parser(name, help=help_text)
        r.add_argument("events", type=Path, nargs="?" if name == "large-value" else None,
                       help="events .parquet or .csv")
        r.add_argument("--out", type=Path, required=True,
                       help="output path without suffix: writes OUT.csv and OUT.parquet (an "
                            "existing directory: large_value[_DATE].csv/.parquet in it)")
        r.add_argument("--formats", default="csv,parquet", help="csv, parquet or both")
        r.add_argument("--mapping", default=None,
                       help="column mapping TOML, or a built-in: amlsim, synth, bank_export")
        if name == "large-value":
            r.add_argument("--thresholds", type=Path, default=None,
                           help="report lines TOML, or a policy file (default: shipped lines; "
                                "--server uses the server's policy)")
            r.add_argument("--institution", action="append", default=None,
                           help="report only customers of this institution (repeatable)")
            r.add_argument("--server", default=None,
                           help="HOST:PORT: one day of the running server's report ledger "
                                "(GetLargeValueReport)")
            add_client_options(r, "with --server: bearer token of a police, regulator, admin, "
                                  "or institution-bound bank or payment caller")
            r.add_argument("--checkpoint", type=Path, default=None,
                           help="a file store directory or checkpoint file: one day of the "
                                "report ledger it holds, read offline")
            r.add_argument("--date", default=None,
                           help="with --server or --checkpoint: the local day, YYYY-MM-DD")
            r.add_argument("--show", type=int, default=20, metavar="N",
                           help="print the first N rows as a table (amounts in CNY, times in "
                                "UTC); 0: none (default 20)")
        else:
            r.add_argument("--policy", type=Path, default=None, help="policy TOML")
            r.add_argument("--decisions", type=Path, default=None,
                           help="decisions of an earlier `screening replay --out`")
        r.set_defaults(func=_cmd_report)
    add_case_command(sub)
    add_checkpoint_command(sub)
    add_audit_command(sub)
    return parser


# Exit status when the reader of stdout left early (`screening features | head`): 128 + SIGPIPE,
# what a command killed by SIGPIPE reports (as `seq 100000 | head` does), so a shell running
# with `set -o pipefail` sees the same from screening as from any other Unix tool.
_EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # argparse itself ignores a closed stdout (--help)
    try:
        code: int = args.func(args)
        sys.stdout.flush()  # a reader that left shows here, not as a traceback at exit
        return code
    except (ConfigError, InputFileError, StoreUnavailable, CheckpointError) as exc:
        print(f"screening: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _stdout_to_devnull()
        return _EXIT_BROKEN_PIPE


def _stdout_to_devnull() -> None:
    """Point stdout's descriptor at /dev/null: what is still buffered for a reader that left
    is dropped at exit instead of failing once more (the Python documentation's recipe, see
    the note on SIGPIPE in the signal module)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
