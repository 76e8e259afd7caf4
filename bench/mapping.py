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
from screening.offline.events import conform, read_table
from screening.offline.mapping import load_mapping, map_frame
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
    """Seconds per step for the native CSV and for the bank export CSV of the same events:
    parsing the CSV, turning it into the event schema (``conform``, or the mapping), and the
    replay (validate, encode, decide); the runs alternate native and mapped."""
    for_batch_jobs()
    native = bank_style_terminals(generate(SynthConfig(seed=seed, events_target=events)).events)
    settings = load_settings(overrides={"graph": {"enabled": False}})
    policy = load_policy()
    mapping = load_mapping("bank_export")
    steps = ("parse", "to_schema", "replay")
    runs: dict[str, dict[str, list[float]]] = {
        name: {s: [] for s in steps} for name in ("native", "mapped")}
    # the native CSV through the synth mapping: the same parsing work as `conform` (ISO text),
    # so the difference is what the mapping machinery itself costs
    identity = load_mapping("synth")
    same_input: list[float] = []
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        native_csv, bank_csv = Path(tmp) / "events.csv", Path(tmp) / "bank.csv"
        write_native_csv(native, native_csv)
        to_bank_export(native).write_csv(bank_csv)
        sizes = {"native_csv_bytes": native_csv.stat().st_size,
                 "bank_csv_bytes": bank_csv.stat().st_size}
        decisions: dict[str, pl.DataFrame] = {}
        for _ in range(repeat):
            for name, path in (("native", native_csv), ("mapped", bank_csv)):
                t0 = time.perf_counter()
                raw = read_table(path)
                t1 = time.perf_counter()
                frame = (conform(raw, str(path)) if name == "native"
                         else map_frame(raw, mapping, str(path)))
                t2 = time.perf_counter()
                decisions[name] = replay(frame, policy, settings, origin=str(path)).decisions
                t3 = time.perf_counter()
                for step, seconds in zip(steps, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    runs[name][step].append(seconds)
                if name == "native":
                    t4 = time.perf_counter()
                    via = map_frame(raw, identity, str(path))
                    same_input.append(time.perf_counter() - t4)
                    # (the native CSV reader reads a call's empty cash cell as false, the
                    # mapping leaves it empty: neither is read on a call)
                    flags = pl.col("cash", "cross_border").fill_null(False)
                    if not via.with_columns(flags).equals(frame.with_columns(flags)):
                        raise RuntimeError("the synth mapping does not read the native file as is")
                del raw, frame
    n = native.height
    same = decisions["native"].drop("row").equals(decisions["mapped"].drop("row"))
    out: dict[str, Any] = {"events": n, "repeat": repeat, **sizes, "decisions_equal": same}
    for name, r in runs.items():
        totals = [sum(x) for x in zip(*r.values(), strict=True)]
        out[name] = {**{f"{s}_s": _r(v) for s, v in r.items()},
                     "events_per_s": {"median": round(n / statistics.median(totals)),
                                      "best": round(n / min(totals))}}
    # on a shared machine the fastest run of a step is the least disturbed one
    out["to_schema_us_per_event"] = {
        name: {"median": round(statistics.median(r["to_schema"]) / n * 1e6, 3),
               "best": round(min(r["to_schema"]) / n * 1e6, 3)} for name, r in runs.items()}
    out["to_schema_us_per_event"]["native_via_synth_mapping"] = {
        "median": round(statistics.median(same_input) / n * 1e6, 3),
        "best": round(min(same_input) / n * 1e6, 3)}
    out["mapping_cost_us_per_event"] = {
        variant: {k: round(out["to_schema_us_per_event"][variant][k]
                           - out["to_schema_us_per_event"]["native"][k], 3)
                  for k in ("median", "best")}
        for variant in ("mapped", "native_via_synth_mapping")}
    return out


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
