"""`screening case export`: case graphs for investigators, from a running server or a file.

    screening case export --server HOST:PORT --token T --account ACC --hops 2 --out DIR
    screening case export --server HOST:PORT --tls-ca ca.pem --tls-cert police.pem \
        --tls-key police.key --account ACC --out DIR
    screening case export --events FILE [--mapping amlsim] --phone +8613... --out DIR

Against a server it calls ExportCaseGraph (police/admin tokens get identifiers in clear, others
masked). Offline it replays the event file through the same graph (and policy, for the decisions
on the edges) and exports from there; identifiers are in clear unless ``--mask``. Both write the
same files into --out (see ``screening.case``) and print a short summary.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from screening.remote_cli import add_client_options, connect, rpc_failure

__all__ = ["add_case_command"]

_FORMATS = ("graphml", "gexf", "json", "csv", "png", "svg")


def add_case_command(sub: Any) -> None:
    """Add `case` (with `case export`) to the top-level subparsers of ``screening``."""
    p = sub.add_parser("case", help="case graphs for investigators (export around an account, "
                                    "phone number or transaction)")
    csub = p.add_subparsers(dest="case_command", required=True, metavar="ACTION")
    e = csub.add_parser("export", help="write GraphML, GEXF, JSON, CSV and a picture of the graph "
                                       "around a centre into --out")
    centre = e.add_mutually_exclusive_group(required=True)
    centre.add_argument("--account", help="centre: an account id")
    centre.add_argument("--phone", help="centre: a phone number")
    centre.add_argument("--transaction", help="centre: a transaction id (payee = suspect)")
    e.add_argument("--hops", type=int, default=0, help="hops from the centre, 1..4 (default 2)")
    e.add_argument("--from", dest="from_time", default=None,
                   help="ISO date or time (UTC unless it has an offset); default: 30 days before --to")
    e.add_argument("--to", dest="to_time", default=None,
                   help="ISO date or time; default: now (server) or the newest event (file)")
    e.add_argument("--max-nodes", type=int, default=0, help="node cap (default 300, at most 2000)")
    e.add_argument("--format", dest="formats", action="append", choices=_FORMATS, default=None,
                   help="repeat for several; default: all")
    e.add_argument("--out", type=Path, required=True, help="folder to write the files into")
    source = e.add_mutually_exclusive_group(required=True)
    source.add_argument("--server", help="HOST:PORT of a running screening server")
    source.add_argument("--events", type=Path, help="event file (Parquet/CSV) to build the graph from")
    add_client_options(e, "with --server: bearer token")
    e.add_argument("--mapping", default=None,
                   help="--events: column mapping TOML file, or a built-in: amlsim, synth, "
                        "bank_export")
    e.add_argument("--watchlist", type=Path, default=None,
                   help="--events: watchlist file (kind, value[, expires_at, reason, source])")
    e.add_argument("--policy", type=Path, default=None, help="--events: policy TOML for decisions")
    e.add_argument("--mask", action="store_true", help="--events: mask identifiers")
    e.set_defaults(func=_cmd_case_export)


def _when(text: str | None, field: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"screening: --{field}: not an ISO date or time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _request(args: argparse.Namespace) -> Any:
    from screening.client import timestamp
    from screening.v1 import screening_pb2 as pb

    req = pb.ExportCaseGraphRequest(hops=args.hops, max_nodes=args.max_nodes)
    if args.account:
        req.account_id = args.account
    elif args.phone:
        req.phone_number = args.phone
    else:
        req.transaction_id = args.transaction
    for name, field in (("from_time", "from"), ("to_time", "to")):
        when = _when(getattr(args, name), field)
        if when is not None:
            getattr(req, name).CopyFrom(timestamp(when))
    names = {"graphml": pb.CASE_FORMAT_GRAPHML, "gexf": pb.CASE_FORMAT_GEXF,
             "json": pb.CASE_FORMAT_JSON, "csv": pb.CASE_FORMAT_CSV, "png": pb.CASE_FORMAT_PNG,
             "svg": pb.CASE_FORMAT_SVG}
    req.formats.extend(names[f] for f in dict.fromkeys(args.formats or ()))
    return req


def _cmd_case_export(args: argparse.Namespace) -> int:
    import grpc

    from screening.case import write_files
    from screening.convert import case_files
    from screening.errors import ScreeningError

    req = _request(args)
    try:
        if args.server:
            with connect(args, args.server) as client:
                msg = client.export_case_graph(req)
        else:
            msg = _offline(args, req)
    except grpc.RpcError as exc:
        print(rpc_failure(args, args.server or "case export", exc), file=sys.stderr)
        return 1
    except ScreeningError as exc:
        print(f"screening: case export: {exc}", file=sys.stderr)
        return 1
    paths = write_files(case_files(msg), args.out)
    s = msg.summary
    print(f"case graph around {s.centre}: {s.nodes} nodes, {s.edges} edges ({s.events} "
          f"transactions/calls/links), {s.hops} hop(s), "
          f"{s.from_time.ToJsonString()} .. {s.to_time.ToJsonString()}"
          + (", identifiers masked" if s.identifiers_masked else ""))
    for note in s.notes:
        print(f"  capped: {note}")
    for f in s.findings:
        print(f"  {f.detector}: {f.description}")
    for path in paths:
        print(f"  wrote {path}")
    return 0


def _offline(args: argparse.Namespace, req: Any) -> Any:
    """Replay --events through the graph and policy, then export like the server does."""
    import polars as pl

    from screening.case import export_case
    from screening.config import load_settings
    from screening.convert import Converter, case_graph_message
    from screening.errors import InputFileError
    from screening.masking import Masker
    from screening.offline.events import read_events
    from screening.offline.mapping import load_mapping
    from screening.offline.replay import read_watchlist, replay
    from screening.policy import load_policy

    settings = load_settings(getattr(args, "config", None), os.environ)
    policy = load_policy(args.policy)
    mapping = load_mapping(args.mapping) if args.mapping else None
    frame = read_events(args.events, mapping)
    watch = read_watchlist(args.watchlist) if args.watchlist else None
    result = replay(frame, policy, settings, origin=str(args.events), watchlist=watch)
    if result.graph is None:
        raise InputFileError("the transaction graph is disabled ([graph] enabled = false)")
    times = result.encoded.frame.get_column("event_time")
    newest = int(times.dt.epoch("ms").to_numpy().max()) if times.len() else 0
    conv = Converter(settings, policy, lambda: newest)
    case = conv.case_request(req)
    data = _case_input(result, case, watch if watch is not None else pl.DataFrame(), settings.graph)
    show = Masker() if args.mask else (lambda v: v)
    bundle = export_case(data, show, case.formats)
    return case_graph_message(bundle.files, bundle.graph, bundle.findings, case, masked=args.mask)


def _case_input(result: Any, case: Any, watch: Any, gs: Any) -> Any:
    """Like ``Engine.case_input``, from a replay: names from the file, decisions by event row."""
    import polars as pl

    from graph.case import CaseInput
    from graph.live import node_id
    from screening.errors import NotFound
    from screening.offline.events import normalise_phones

    enc, g = result.encoded, result.graph
    accounts = {v: i for i, v in enumerate(enc.accounts.to_list())}
    victims: tuple[int, ...] = ()
    if case.centre == "transaction_id":
        hit = enc.frame.with_row_index("_ref").filter(
            (pl.col("event_id") == case.value) & (pl.col("kind") == "txn"))
        if hit.height == 0:
            raise NotFound("transaction_id: no such transaction in the event file")
        row = hit.row(0, named=True)
        suspects = (node_id(0, accounts[row["payee_account"]]),)
        victims = (node_id(0, accounts[row["payer_account"]]),)
    elif case.centre == "account_id":
        idx = accounts.get(case.value)
        if idx is None:
            raise NotFound("account_id: no such account in the event file")
        suspects = (node_id(0, idx),)
    else:
        phones = {v: i for i, v in enumerate(enc.phones.to_list())}
        idx = phones.get(case.value)
        if idx is None:
            raise NotFound("phone_number: no such phone number in the event file")
        suspects = (node_id(1, idx),)
    hood = g.neighbourhood(list(suspects + victims), hops=case.hops, lo_ms=case.from_ms,
                           hi_ms=case.to_ms, max_nodes=case.max_nodes, hub_degree=gs.hub_degree,
                           max_work=gs.export_max_work)
    edges = g.edges_among(hood, lo_ms=case.from_ms, hi_ms=case.to_ms,
                          max_edges=gs.export_max_edges)
    tables = (enc.accounts, enc.phones, enc.devices)
    names = {n: str(tables[n % 3][n // 3]) for n in hood.nodes.tolist()}
    listed: dict[tuple[int, str], str] = {}
    if watch.height:
        kinds = {"account": 0, "phone": 1, "device": 2}
        values = normalise_phones(watch.get_column("value")).to_list()
        for i, r in enumerate(watch.iter_rows(named=True)):
            value = values[i] if r["kind"] == "phone" else r["value"]
            reason = str(r.get("reason") or "listed")
            listed[(kinds[r["kind"]], value)] = f"{reason} ({r.get('source') or 'watchlist file'})"
    watch_by_node = {n: listed[(n % 3, v)] for n, v in names.items() if (n % 3, v) in listed}
    dec = result.decisions.head(enc.events.shape[0])
    refs = sorted({r for r in edges.ref.tolist() if r >= 0})
    rows = dec.select("action", "reason_codes")[refs].rows() if refs else []
    decisions = {r: (a, tuple(c)) for r, (a, c) in zip(refs, rows, strict=True)}
    terminals = frozenset(n for n in names if g.is_terminal(n))
    return CaseInput(centre_label=case.value, suspects=suspects, victims=victims, hops=case.hops,
                     lo_ms=case.from_ms, hi_ms=case.to_ms, max_nodes=case.max_nodes, hood=hood,
                     edges=edges, names=names, terminals=terminals, watch=watch_by_node,
                     decisions=decisions)
