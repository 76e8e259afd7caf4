"""IBM AMLSim ground truth: what the graph detectors catch, per typology.

    python -m bench.amlsim [--data ../shared/data/amlsim] [--json out.json]

Replays ``transactions_labelled.csv.gz`` (mapping ``amlsim``) through the live graph, features
and a policy: the default (fraud) policy; ``policies/aml_streaming.toml`` with the graph switched
off (what the streaming features alone catch), without and with ``bench/amlsim_artefacts.toml``
(rules exploiting the data's known artefact: alert members have no other activity); and
``policies/aml_typologies.toml`` (graph structure and timing) without and with the artefact
rules, with the graph settings of ``policies/aml_graph.toml``. For each typology it reports

- account recall: share of the members of its SAR alerts (``alerts.csv``, ``is_sar = 1``) that
  are payer or payee of an alerted transaction (WARN or stronger, or a suspicious flag) — the
  strict, online measure: a pattern is usually complete only at its last transfer, and only
  that transfer's two parties count;
- alert recall: share of its SAR alerts with at least one alerted labelled transaction (what
  starts an investigation, whose case export then shows the whole pattern);
- transaction recall under the simulator's labels (``is_sar``) and the repaired ones
  (``is_sar_fixed``; upstream leaves bipartite and stack unlabelled);

and the alert rate on accounts outside any alert (SAR or decoy) and on decoy-alert members.
The data is not needed by anything else in the project; without it this prints how to get it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from screening.config import load_settings
from screening.offline.backtest import ALERT_ACTIONS
from screening.offline.events import read_events
from screening.offline.mapping import load_mapping
from screening.offline.replay import replay
from screening.policy import Policy, load_policy, parse_policy

__all__ = ["evaluate", "main", "run"]

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "amlsim"
TYPOLOGIES = ("fan_in", "fan_out", "cycle", "scatter_gather", "gather_scatter", "bipartite", "stack")
# Multi-PNA (AMLworld HI-Small), per-pattern transaction recall, for comparison
PUBLISHED = {"fan_in": 85, "fan_out": 93, "cycle": 62, "scatter_gather": 94, "gather_scatter": 93,
             "bipartite": 55}


def _policies() -> dict[str, tuple[Policy, dict[str, Any]]]:
    aml_text = resources.files("screening").joinpath("policies/aml_typologies.toml").read_text(
        encoding="utf-8")
    artefacts = (Path(__file__).parent / "amlsim_artefacts.toml").read_text(encoding="utf-8")
    graph_cfg = resources.files("screening").joinpath("policies/aml_graph.toml")
    import tomllib

    aml_graph = tomllib.loads(graph_cfg.read_text(encoding="utf-8"))
    streaming = resources.files("screening").joinpath("policies/aml_streaming.toml").read_text(
        encoding="utf-8")
    no_graph: dict[str, Any] = {"graph": {"enabled": False}}
    return {
        "default policy": (load_policy(), {}),
        "streaming, no artefacts": (parse_policy(streaming, "aml_streaming.toml"), no_graph),
        "streaming + artefacts": (parse_policy(streaming + "\n" + artefacts, "streaming+art"),
                                  no_graph),
        "aml, no artefacts": (parse_policy(aml_text, "aml_typologies.toml"), aml_graph),
        "aml + artefacts": (parse_policy(aml_text + "\n" + artefacts, "aml+artefacts"), aml_graph),
    }


def evaluate(raw: pl.DataFrame, decisions: pl.DataFrame, alerts: pl.DataFrame) -> dict[str, Any]:
    """The metrics of the module docstring for one replay's ``decisions``."""
    alerted = decisions.filter(~pl.col("duplicate")).select(
        "event_id", (pl.col("action").is_in(ALERT_ACTIONS) | pl.col("suspicious")).alias("alert"))
    tx = raw.select(pl.col("tran_id").cast(pl.String).alias("event_id"),
                    pl.col("orig_acct").cast(pl.String).alias("payer"),
                    pl.col("bene_acct").cast(pl.String).alias("payee"), "is_sar", "alert_type",
                    "is_sar_fixed", "alert_id_fixed", "alert_type_fixed").join(
        alerted, on="event_id", how="left").with_columns(pl.col("alert").fill_null(False))
    hit = tx.filter(pl.col("alert"))
    caught = set(hit.get_column("payer").to_list()) | set(hit.get_column("payee").to_list())
    members = (alerts.with_columns(pl.col("members").str.split(" ")).explode("members")
               .select(pl.col("members").alias("account"), "alert_type", "is_sar", "alert_id"))
    everyone = set(tx.get_column("payer").to_list()) | set(tx.get_column("payee").to_list())
    outside = everyone - set(members.get_column("account").to_list())
    decoy = set(members.filter(pl.col("is_sar") == 0).get_column("account").to_list())
    out: dict[str, Any] = {"per_typology": {}, "outside_accounts": len(outside),
                           "outside_alert_rate": len(outside & caught) / len(outside),
                           "decoy_accounts": len(decoy),
                           "decoy_alert_rate": len(decoy & caught) / len(decoy) if decoy else 0.0}
    sar = members.filter(pl.col("is_sar") == 1)
    for typ in TYPOLOGIES:
        accts = set(sar.filter(pl.col("alert_type") == typ).get_column("account").to_list())
        fixed = tx.filter((pl.col("alert_type_fixed") == typ) & (pl.col("is_sar_fixed") == 1))
        upstream = tx.filter((pl.col("alert_type") == typ) & (pl.col("is_sar") == 1))
        per_alert = fixed.group_by("alert_id_fixed").agg(pl.col("alert").any())
        out["per_typology"][typ] = {
            "accounts": len(accts),
            "account_recall": len(accts & caught) / len(accts) if accts else None,
            "alerts": per_alert.height,
            "alert_recall": _mean(per_alert.get_column("alert")),
            "txn_recall_fixed": _mean(fixed.get_column("alert")),
            "txn_recall_upstream": _mean(upstream.get_column("alert")),
        }
    return out


def _mean(flags: pl.Series) -> float | None:
    return float(flags.cast(pl.Float64).to_numpy().mean()) if flags.len() else None


def run(data: Path) -> dict[str, dict[str, Any]]:
    raw = pl.read_csv(data / "transactions_labelled.csv.gz")
    alerts = pl.read_csv(data / "alerts.csv")
    events = read_events(data / "transactions_labelled.csv.gz", load_mapping("amlsim"))
    results = {}
    for name, (policy, overrides) in _policies().items():
        t0 = time.perf_counter()
        settings = load_settings(overrides=overrides)
        result = replay(events, policy, settings, origin="amlsim")
        metrics = evaluate(raw, result.decisions, alerts)
        metrics["seconds"] = round(time.perf_counter() - t0, 1)
        metrics["graph_seconds"] = round(result.graph_seconds, 1)
        results[name] = metrics
    return results


def _pct(x: float | None) -> str:
    return "    -" if x is None else f"{100 * x:5.1f}"


def format_results(results: dict[str, dict[str, Any]]) -> str:
    names = list(results)
    lines = ["account recall / alert recall / transaction recall (repaired labels | upstream), %",
             f"{'typology':16}" + "".join(f" | {n:^30}" for n in names) + " | Multi-PNA txn"]
    for typ in TYPOLOGIES:
        row = f"{typ:16}"
        for n in names:
            m = results[n]["per_typology"][typ]
            row += (f" | {_pct(m['account_recall'])} {_pct(m['alert_recall'])} "
                    f"{_pct(m['txn_recall_fixed'])}|{_pct(m['txn_recall_upstream'])}")
        lines.append(row + f" | {PUBLISHED.get(typ, '-')}")
    lines.append(f"{'outside alerts':16}" + "".join(
        f" | {'alert rate ' + _pct(results[n]['outside_alert_rate']).strip() + ' %':^30}"
        for n in names))
    lines.append(f"{'decoy members':16}" + "".join(
        f" | {'alert rate ' + _pct(results[n]['decoy_alert_rate']).strip() + ' %':^30}"
        for n in names))
    lines.append(f"{'replay seconds':16}" + "".join(
        f" | {results[n]['seconds']:^30}" for n in names))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="AMLSim per-typology recall of the graph detectors")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, default=None, help="also write the metrics here")
    args = parser.parse_args(argv)
    if not (args.data / "transactions_labelled.csv.gz").exists():
        print(f"no AMLSim data in {args.data} (see ../shared/data/amlsim/README.md)", file=sys.stderr)
        return 2
    results = run(args.data)
    print(format_results(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
