"""Request validation at the edges of what the kernels hold."""

from __future__ import annotations

import datetime as dt

import pytest

from screening.client import transaction
from screening.config import load_settings
from screening.convert import Converter
from screening.errors import InvalidRequest
from screening.policy import load_policy

NOW_MS = 1_765_000_000_000


def test_an_amount_worth_more_than_the_kernels_sum_limit_is_refused_naming_the_field() -> None:
    """With a configured rate large enough, an allowed number of minor units can be worth more
    than 2**62 fen, past which the kernels' sums stop: refused, naming the amount."""
    settings = load_settings(overrides={"currencies": {"XAU": 10**13}})
    conv = Converter(settings, load_policy(None), lambda: NOW_MS)
    when = dt.datetime.fromtimestamp(NOW_MS / 1000 - 60, dt.UTC)
    ok = conv.transaction(transaction("t1", when, "a", "b", 10**5, currency="XAU"))
    assert ok.amount_fen == 10**12
    with pytest.raises(InvalidRequest) as info:
        conv.transaction(transaction("t2", when, "a", "b", 10**15, currency="XAU"))
    assert str(info.value).startswith("amount.minor_units:"), str(info.value)
