"""The parts behind shedding and throttling, with a clock of the test's own: the failure
throttle, the service-time estimate, TOML strings for token names, the new settings."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from screening.auth import FailureThrottle, peer_address, toml_string
from screening.config import load_settings
from screening.errors import ConfigError, Throttled
from screening.rpc import LANE_OF, SERVICE, ServiceTime


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_blocks_after_max_failures_and_doubles_each_repeat() -> None:
    """3 failures block the address (any port) for 30 s, the next block 60 s; others are free."""
    clock = Clock()
    t = FailureThrottle(3, 30.0, clock=clock)
    for port in (1, 2):
        t.failed(f"ipv4:10.0.0.5:{port}")
    assert t.refusal("ipv4:10.0.0.5:9") is None
    t.failed("ipv4:10.0.0.5:3")
    refusal = t.refusal("ipv4:10.0.0.5:4")
    assert isinstance(refusal, Throttled) and "ipv4:10.0.0.5" in str(refusal)
    assert t.refusal("ipv4:10.0.0.6:4") is None
    clock.now += 31
    assert t.refusal("ipv4:10.0.0.5:4") is None
    for _ in range(3):
        t.failed("ipv4:10.0.0.5:1")
    clock.now += 59
    assert t.refusal("ipv4:10.0.0.5:1") is not None
    clock.now += 2
    assert t.refusal("ipv4:10.0.0.5:1") is None


def test_throttle_forgets_failures_outside_the_window_and_bounds_its_table() -> None:
    """Failures spread wider than block_seconds never block; at most max_addresses are kept."""
    clock = Clock()
    t = FailureThrottle(3, 30.0, max_addresses=4, clock=clock)
    for _ in range(5):
        t.failed("ipv4:10.0.0.5:1")
        t.failed("ipv4:10.0.0.5:1")
        clock.now += 31
    assert t.refusal("ipv4:10.0.0.5:1") is None
    for i in range(10):
        t.failed(f"ipv4:10.0.1.{i}:1")
    assert len(t._seen) == 4


def test_throttle_off_counts_nothing() -> None:
    """max_failures 0: never blocks."""
    t = FailureThrottle(0, 30.0)
    for _ in range(100):
        t.failed("ipv4:10.0.0.5:1")
    assert t.refusal("ipv4:10.0.0.5:1") is None


def test_peer_address_drops_the_port() -> None:
    assert peer_address("ipv4:127.0.0.1:5555") == "ipv4:127.0.0.1"
    assert peer_address("ipv6:[::1]:5555") == "ipv6:[::1]"
    assert peer_address("unix:/tmp/s") == "unix:/tmp/s"


def test_service_time_follows_measurements_and_relaxes_while_unmeasured() -> None:
    """Per-item estimate from measured calls; halves per half-life when nothing is measured,
    down to the fastest cost per item measured, which halves thirty times slower."""
    s = ServiceTime(half_life_s=1.0)
    assert s.expected(10) == 0.0  # nothing measured: nothing refused
    s.update(1.0, items=1000)
    now = s._at
    assert s.expected(1000, now) == pytest.approx(1.0)
    # two idle seconds: the mean would be 0.25 s, but 1,000 items never took less than 1 s here
    assert s.expected(1000, now + 2.0) == pytest.approx(0.5 ** (2 / 30))
    assert s.expected(1000, now + 300.0) == pytest.approx(0.5 ** 10)  # a slow first call fades
    s.update(0.0002, items=1)  # faster: the floor follows it down at once
    assert s.expected(1, s._at + 10.0) < 0.0002
    s.update(0.002, items=1)
    assert 0.0002 < s.expected(1) < 0.002


def test_every_method_has_a_lane() -> None:
    """A method added to the contract must be given a lane (the server would not start)."""
    assert {m.name for m in SERVICE.methods} == set(LANE_OF)
    assert set(LANE_OF.values()) <= {"screen", "query", "stream"}


@given(st.text())
def test_toml_string_round_trips_any_text(text: str) -> None:
    """Whatever a token's name holds, the tokens file reads it back the same."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # not writable as UTF-8; add_token refuses it
    assert tomllib.loads(f"name = {toml_string(text)}\n")["name"] == text


def test_new_settings_are_checked() -> None:
    """[server] max_workers/max_queue/max_streams and [auth] throttling bounds name the key."""
    s = load_settings(env={"SCREENING_SERVER__MAX_STREAMS": "7", "SCREENING_AUTH__MAX_FAILURES": "0"})
    assert (s.server.max_streams, s.auth.max_failures) == (7, 0)
    for section, key, value, needle in (("server", "max_workers", 0, "max_workers"),
                                        ("server", "max_queue", -1, "max_queue"),
                                        ("server", "max_streams", 0, "max_streams"),
                                        ("auth", "block_seconds", 0.0, "block_seconds")):
        with pytest.raises(ConfigError, match=needle):
            load_settings(overrides={section: {key: value}})


def test_a_lane_counts_what_it_holds_and_what_waits_for_a_thread() -> None:
    """One thread, three calls: one runs, two wait; held 3, queued 2; all done, both 0."""
    import threading

    from screening.lanes import Lane

    lane = Lane("t", 1, 4, "full")
    gate = threading.Event()
    started = threading.Event()

    def work() -> None:
        started.set()
        gate.wait(10)

    try:
        futures = [lane.submit(work) for _ in range(3)]
        assert started.wait(10)
        assert (lane.held, lane.queued) == (3, 2)
        gate.set()
        for f in futures:
            f.result(10)
        assert (lane.held, lane.queued) == (0, 0)
    finally:
        gate.set()
        lane.shutdown(wait=True)
