"""A mapped file decides exactly as the same events in native form, offline and through a real
server.

``bench.mapping.to_bank_export`` writes a synthetic stream in the generic bank export layout with
plain polars (cash legs with an empty side and the terminal in ``terminal_id``, epoch-ms times,
opening times within the bank's day, the bank's channel and caller-class words); the shipped
``bank_export`` mapping reads it back.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from bench.mapping import bank_style_terminals, to_bank_export, to_bank_registry
from screening.config import load_settings
from screening.offline.events import read_events, validate_registry
from screening.offline.mapping import load_mapping, read_mapped_registry
from screening.offline.messages import to_requests
from screening.offline.replay import replay
from screening.offline.synth import SynthConfig, SynthResult, generate
from screening.policy import load_policy
from screening.v1 import screening_pb2 as pb
from tests.conftest import Live

SETTINGS = load_settings()
POLICY = load_policy()
DECISION_COLUMNS = ("event_id", "kind", "event_time", "action", "reason_codes", "reason_bits",
                    "reason_bits_high", "risk_score", "large_value", "suspicious", "notify_police",
                    "duplicate", "amount_fen")


@pytest.fixture(scope="module")
def synth() -> SynthResult:
    return generate(SynthConfig(seed=7, n_persons=150, n_organisations=15, days=8,
                                scenario_rate=0.2))


@pytest.fixture(scope="module")
def files(synth: SynthResult, tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, Path, Path]:
    """The native events (terminals named the bank's way) and the bank export files of them."""
    folder = tmp_path_factory.mktemp("bank")
    native = bank_style_terminals(synth.events)
    to_bank_export(native).write_csv(folder / "bank.csv")
    to_bank_registry(synth.registry).write_csv(folder / "accounts.csv")
    return native, folder / "bank.csv", folder / "accounts.csv"


def test_mapped_bank_export_replays_to_the_native_decisions(
        synth: SynthResult, files: tuple[pl.DataFrame, Path, Path]) -> None:
    """Every decision column of the replay of the mapped bank export (with its registry read
    through the mapping) equals the replay of the native events and registry."""
    native, bank, accounts = files
    mapping = load_mapping("bank_export")
    mapped = read_events(bank, mapping)
    registry = read_mapped_registry(accounts, mapping)
    assert registry.equals(validate_registry(synth.registry))
    want = replay(native, POLICY, SETTINGS, registry=validate_registry(synth.registry)).decisions
    got = replay(mapped, POLICY, SETTINGS, registry=registry).decisions
    assert got.select(DECISION_COLUMNS).equals(want.select(DECISION_COLUMNS))
    terminals = native.filter((pl.col("payer_party_type") == "cash_terminal")
                              | (pl.col("payee_party_type") == "cash_terminal"))
    assert terminals.height > 20  # cash legs are in the comparison
    assert terminals.get_column("payee_account").str.starts_with("CTR-").any()
    assert want.filter(pl.col("action") != "ALLOW").height > 10  # so are decisions that stop


def test_mapped_file_sent_through_the_api_decides_as_its_replay(
        files: tuple[pl.DataFrame, Path, Path], fresh: Live) -> None:
    """The mapped events sent one by one to a real server get the action, reasons and risk
    score that the replay of the native events computes."""
    native, bank, _ = files
    mapped = read_events(bank, load_mapping("bank_export"))
    offline = replay(native, POLICY, SETTINGS).decisions
    rows = []
    for req in to_requests(mapped):
        if isinstance(req, pb.Transaction):
            d = fresh.client("admin").screen(req)
            rows.append((d.transaction_id, pb.Action.Name(d.action).removeprefix("ACTION_"),
                         [r.code for r in d.reasons], d.risk_score))
        else:
            c = fresh.client("admin").report_call(req)
            rows.append((c.call_id, pb.CallAction.Name(c.action).removeprefix("CALL_ACTION_"),
                         [r.code for r in c.reasons], c.risk_score))
    live = pl.DataFrame(rows, schema=["event_id", "action", "reason_codes", "risk_score"],
                        orient="row")
    joined = offline.join(live, on="event_id", suffix="_live")
    assert joined.height == native.height
    for col in ("action", "reason_codes", "risk_score"):
        diff = joined.filter(pl.col(col) != pl.col(f"{col}_live"))
        assert diff.height == 0, diff.head(5)
    assert joined.filter(pl.col("action") != "ALLOW").height > 10


def test_accounts_load_sends_a_registry_read_through_the_mapping(
        files: tuple[pl.DataFrame, Path, Path], synth: SynthResult, fresh: Live,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`screening accounts load ACCOUNTS --mapping bank_export` upserts every account of the
    bank's registry file to a real server."""
    from screening.cli import main

    _, _, accounts = files
    assert main(["accounts", "load", str(accounts), "--mapping", "bank_export",
                 "--server", fresh.server.address, "--token", "test-token-admin"]) == 0
    assert f"{synth.registry.height:,} accounts upserted" in capsys.readouterr().out
