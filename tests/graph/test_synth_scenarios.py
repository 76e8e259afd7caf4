"""Planted scenarios of the scenario generator are found by the detector meant for them, and the
graph rules of the default policy catch them without flooding ordinary customers."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features import _kernels as fk
from features.layout import GRAPH_FEATURES
from screening.config import load_settings
from screening.offline.backtest import backtest
from screening.offline.replay import ReplayResult, replay
from screening.offline.synth import SynthConfig, SynthResult, generate
from screening.policy import load_policy

CONFIG = SynthConfig(seed=17, n_persons=2_500, n_organisations=120, days=30, scenario_rate=0.06)


@pytest.fixture(scope="module")
def run() -> tuple[SynthResult, ReplayResult, pl.DataFrame]:
    synth = generate(CONFIG)
    result = replay(synth.events, load_policy(), load_settings(), keep_features=True)
    assert result.features is not None
    graph = pl.DataFrame(result.features[:, fk.F_EXTRA_BASE:fk.F_EXTRA_BASE + fk.N_EXTRA],
                         schema=list(GRAPH_FEATURES))
    frame = pl.concat([result.encoded.frame.select("kind", "scenario", "scenario_id",
                                                   "amount_minor"), graph], how="horizontal")
    return synth, result, frame.filter(pl.col("kind") == "txn")


def _cases_with(frame: pl.DataFrame, scenario: str, cond: pl.Expr) -> tuple[int, int]:
    cases = frame.filter(pl.col("scenario") == scenario)
    hit = cases.filter(cond).get_column("scenario_id").n_unique()
    return hit, cases.get_column("scenario_id").n_unique()


@pytest.mark.parametrize(("scenario", "feature", "least", "share"), [
    ("round_tripping", "graph_cycle_length", 3, 1.0),
    ("mule_ring", "graph_chain_hops", 3, 1.0),
    ("illegal_fundraising", "graph_ponzi_repaid", 5, 1.0),
    ("telecom_fraud", "graph_chain_hops", 3, 0.8),
])
def test_each_planted_scenario_is_found_by_its_detector(
        run: tuple[SynthResult, ReplayResult, pl.DataFrame], scenario: str, feature: str,
        least: float, share: float) -> None:
    """Cycles for round trips, chains for mule rings and fraud layering, Ponzi for fundraising."""
    hit, cases = _cases_with(run[2], scenario, pl.col(feature) >= least)
    assert cases > 0 and hit >= share * cases, f"{hit} of {cases} {scenario} cases"


def test_ordinary_transfers_rarely_look_like_a_pattern(
        run: tuple[SynthResult, ReplayResult, pl.DataFrame]) -> None:
    """Under 0.1 % of ordinary transfers show a cycle, a 3-hop chain, scatter-gather or Ponzi."""
    ordinary = run[2].filter(pl.col("scenario") == "")
    odd = ordinary.filter((pl.col("graph_cycle_length") > 0) | (pl.col("graph_chain_hops") >= 3)
                          | (pl.col("graph_scatter_gather") >= 3) | (pl.col("graph_ponzi_repaid") > 0))
    assert odd.height < 0.001 * ordinary.height
    assert float(np.mean(ordinary.get_column("graph_truncated").to_numpy())) < 0.01


def test_graph_rules_stop_the_planted_cases(
        run: tuple[SynthResult, ReplayResult, pl.DataFrame]) -> None:
    """Every round trip, mule ring and fundraising case gets a HOLD from a GRAPH_ rule."""
    synth, result, _ = run
    metrics = backtest(synth.events, result.decisions, synth.accounts).per_scenario
    for scenario in ("round_tripping", "mule_ring", "illegal_fundraising"):
        row = metrics.filter(pl.col("scenario") == scenario).to_dicts()[0]
        assert row["cases_stopped"] == row["cases"], row
    fired = result.decisions.explode("reason_codes").filter(
        pl.col("reason_codes").str.starts_with("GRAPH_")).get_column("reason_codes").unique()
    assert {"GRAPH_ROUND_TRIP", "GRAPH_LAYERING_CHAIN", "GRAPH_PONZI_SIGNATURE"} <= set(fired)
