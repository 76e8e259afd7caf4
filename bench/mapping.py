"""Mapping cost: `python -m bench.mapping [--events 1000000] [--repeat 3] [--out FILE]`.

Writes one synthetic stream twice, as the native event CSV and as the generic bank export of
``screening/mappings/bank_export.toml`` (the same events: terminals renamed in the bank's style
in both), then reads and replays each (graph off: the features + policy path whose speed the
mapping could matter against) and prints events/s of both and the mapping's cost per event.

``to_bank_export`` is also what the tests use to hold a mapped replay equal to the native one:
it writes the layout from the native columns with plain polars, independently of the mapping.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from screening.config import load_settings
from screening.offline.events import read_events
from screening.offline.mapping import load_mapping
from screening.offline.memory import for_batch_jobs
from screening.offline.replay import replay
from screening.offline.synth import SynthConfig, generate
from screening.policy import load_policy

__all__ = ["bank_style_terminals", "main", "measure", "to_bank_export", "to_bank_registry"]

_CHANNEL = {"mobile_app": "mobile_app", "online_banking": "online", "counter": "branch",
            "atm": "atm", "third_party_payment": "third_party", "qr": "qr_pay"}
_CLASS = {"mobile": "MOB", "landline": "FIX", "virtual_operator": "MVNO",
          "international": "INTL", "spoofed_suspect": "SPOOF"}
_OUTCOME = {"ringing": "RINGING", "answered": "ANSWERED", "unanswered": "NO_ANSWER",
            "rejected": "REJECTED", "blocked": "BLOCKED"}
_DAY_MS = 86_400_000
_SHANGHAI_MS = 8 * 3_600_000


def bank_style_terminals(events: pl.DataFrame) -> pl.DataFrame:
    """Terminal accounts renamed as a bank writes them: ``ATM123456789`` -> ``ATM-1234-56789``
    (no bank: the customer's own), ``CTR618018496`` at ICBC -> ``CTR-ICBC-6180-18496``."""
    out = events
    for side in ("payer", "payee"):
        acc, inst = pl.col(f"{side}_account"), pl.col(f"{side}_institution")
        digits = acc.str.slice(3)
        atm = pl.lit("ATM-") + digits.str.slice(0, 4) + pl.lit("-") + digits.str.slice(4)
        ctr = (pl.lit("CTR-") + inst + pl.lit("-") + digits.str.slice(0, 4) + pl.lit("-")
               + digits.str.slice(4))
        out = out.with_columns(
            pl.when((pl.col(f"{side}_party_type") == "cash_terminal") & acc.str.starts_with("ATM"))
            .then(atm)
            .when((pl.col(f"{side}_party_type") == "cash_terminal") & acc.str.starts_with("CTR"))
            .then(ctr).otherwise(acc).alias(f"{side}_account"))
    return out


def _opened_ms(col: str) -> pl.Expr:
    """An opening date as an epoch-ms time within that day in Shanghai (any minute of it, so a
    mapping that took the UTC day would get about a third of them wrong)."""
    minute = (pl.col("event_id").hash(7) % 1440).cast(pl.Int64)
    return (pl.col(col).cast(pl.Int64) * _DAY_MS - _SHANGHAI_MS + minute * 60_000)


def to_bank_export(events: pl.DataFrame) -> pl.DataFrame:
    """Native events (terminals already bank-style) in the bank export layout."""
    txn = pl.col("kind") == "txn"
    term = {s: pl.col(f"{s}_party_type") == "cash_terminal" for s in ("payer", "payee")}

    def side(s: str, src: str) -> pl.Expr:
        return pl.when(term[s]).then(None).otherwise(pl.col(f"{s}_{src}"))

    def yn(c: str) -> pl.Expr:
        return pl.when(~txn).then(None).when(pl.col(c)).then(pl.lit("Y")).otherwise(pl.lit("N"))

    return events.select(
        pl.when(txn).then(pl.lit("TRX")).otherwise(pl.lit("CALL")).alias("record_type"),
        pl.col("event_id").alias("record_id"),
        pl.col("event_time").dt.epoch("ms").alias("event_time_ms"),
        side("payer", "account").alias("from_account"),
        side("payer", "institution").alias("from_bank"),
        side("payer", "party_type").alias("from_type"),
        pl.when(term["payer"]).then(None).otherwise(_opened_ms("payer_opened_date"))
        .alias("from_opened_ms"),
        side("payee", "account").alias("to_account"),
        side("payee", "institution").alias("to_bank"),
        side("payee", "party_type").alias("to_type"),
        pl.when(term["payee"]).then(None).otherwise(_opened_ms("payee_opened_date"))
        .alias("to_opened_ms"),
        pl.col("amount_minor").alias("amount"),
        pl.col("currency"),
        pl.col("channel").replace_strict(_CHANNEL, default=None),
        pl.when(term["payer"]).then(pl.col("payer_account"))
        .when(term["payee"]).then(pl.col("payee_account"))
        .otherwise(pl.col("device_id")).alias("terminal_id"),
        yn("cross_border").alias("cross_border"),
        pl.col("payer_phone").alias("from_phone"),
        pl.col("payee_phone").alias("to_phone"),
        pl.col("memo").alias("remark"),
        pl.col("caller_number").alias("caller"),
        pl.col("callee_number").alias("callee"),
        pl.col("caller_class").replace_strict(_CLASS, default=None),
        pl.col("call_outcome").replace_strict(_OUTCOME, default=None).alias("call_result"),
        pl.col("duration_seconds").alias("duration_s"),
    )


def to_bank_registry(registry: pl.DataFrame) -> pl.DataFrame:
    """A native registry in the bank export's registry layout (times within the local day)."""
    minute = (pl.col("account").hash(3) % 1440).cast(pl.Int64)
    return registry.select(
        pl.col("account").alias("account_no"),
        pl.col("institution").alias("bank"),
        pl.col("party_type").alias("holder_type"),
        (pl.col("opened_date").cast(pl.Int64) * _DAY_MS - _SHANGHAI_MS + minute * 60_000)
        .alias("opened_ms"),
        (pl.col("last_active_date").cast(pl.Int64) * _DAY_MS - _SHANGHAI_MS + minute * 60_000)
        .alias("last_active_ms"),
        pl.col("merchant_category").alias("mcc"),
        pl.when(pl.col("payroll")).then(pl.lit("Y")).otherwise(pl.lit("N")).alias("payroll"),
        pl.col("phone").alias("mobile"),
    )


def write_native_csv(events: pl.DataFrame, path: Path) -> None:
    events.write_csv(path, datetime_format="%Y-%m-%dT%H:%M:%S%.3fZ", date_format="%Y-%m-%d")


def measure(events: int, seed: int = 1, repeat: int = 3, folder: Path | None = None) -> dict[str, Any]:
    """Read + replay seconds of the native CSV and of the bank export CSV of the same events."""
    for_batch_jobs()
    native = bank_style_terminals(generate(SynthConfig(seed=seed, events_target=events)).events)
    settings = load_settings(overrides={"graph": {"enabled": False}})
    policy = load_policy()
    mapping = load_mapping("bank_export")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        native_csv, bank_csv = Path(tmp) / "events.csv", Path(tmp) / "bank.csv"
        write_native_csv(native, native_csv)
        to_bank_export(native).write_csv(bank_csv)
        runs: dict[str, dict[str, list[float]]] = {
            name: {"read": [], "total": []} for name in ("native", "mapped")}
        decisions: dict[str, pl.DataFrame] = {}
        for _ in range(repeat):
            for name, path, m in (("native", native_csv, None), ("mapped", bank_csv, mapping)):
                t0 = time.perf_counter()
                frame = read_events(path, m)
                t1 = time.perf_counter()
                result = replay(frame, policy, settings, origin=str(path))
                t2 = time.perf_counter()
                runs[name]["read"].append(t1 - t0)
                runs[name]["total"].append(t2 - t0)
                decisions[name] = result.decisions
                del frame, result
        same = decisions["native"].drop("row").equals(decisions["mapped"].drop("row"))
        sizes = {"native_csv_bytes": native_csv.stat().st_size,
                 "bank_csv_bytes": bank_csv.stat().st_size}
    n = native.height
    med = {k: {s: statistics.median(v) for s, v in r.items()} for k, r in runs.items()}
    best = {k: {s: min(v) for s, v in r.items()} for k, r in runs.items()}
    return {
        "events": n,
        "repeat": repeat,
        **sizes,
        "decisions_equal": same,
        "native": {"read_s": _r(runs["native"]["read"]), "read_replay_s": _r(runs["native"]["total"]),
                   "events_per_s": round(n / med["native"]["total"])},
        "mapped": {"read_map_s": _r(runs["mapped"]["read"]),
                   "read_map_replay_s": _r(runs["mapped"]["total"]),
                   "events_per_s": round(n / med["mapped"]["total"])},
        # the runs alternate native and mapped; on a shared machine the fastest run of each is
        # the least disturbed, so the cost is given from the medians and from the minima
        "mapping_cost_us_per_event": {
            "median": round((med["mapped"]["total"] - med["native"]["total"]) / n * 1e6, 3),
            "min": round((best["mapped"]["total"] - best["native"]["total"]) / n * 1e6, 3)},
        "read_cost_us_per_event": {
            "median": round((med["mapped"]["read"] - med["native"]["read"]) / n * 1e6, 3),
            "min": round((best["mapped"]["read"] - best["native"]["read"]) / n * 1e6, 3)},
        "events_per_s_best": {k: round(n / best[k]["total"]) for k in best},
    }


def _r(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 3), "runs": [round(v, 3) for v in values]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mapping", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="results JSON")
    args = parser.parse_args(argv)
    out = measure(args.events, args.seed, args.repeat)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if out["decisions_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
