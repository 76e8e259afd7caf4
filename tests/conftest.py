"""Shared fixtures: a real gRPC server on a free port, and clients holding role tokens."""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from screening.auth import ROLES, Authenticator
from screening.client import ScreeningClient
from screening.config import Settings, load_settings
from screening.logs import configure_logging
from screening.server import RunningServer, start_server

TOKENS = {f"test-token-{role}": (f"test-{role}", role) for role in ROLES}


@dataclass
class Live:
    """A running server, its log output and a client per role."""

    server: RunningServer
    log: io.StringIO
    clients: dict[str, ScreeningClient]

    @property
    def bank(self) -> ScreeningClient:
        return self.clients["bank"]

    @property
    def telecom(self) -> ScreeningClient:
        return self.clients["telecom"]

    @property
    def police(self) -> ScreeningClient:
        return self.clients["police"]

    def client(self, role: str) -> ScreeningClient:
        return self.clients[role]


def _start(settings: Settings) -> Live:
    log = io.StringIO()
    masker = configure_logging(settings.log, stream=log)
    running = start_server(settings, masker=masker, auth=Authenticator.with_tokens(TOKENS), port=0)
    clients = {role: ScreeningClient(running.address, token)
               for token, (_, role) in TOKENS.items()}
    for c in clients.values():
        c.wait_ready()
    return Live(running, log, clients)


def _stop(live: Live) -> None:
    for c in live.clients.values():
        c.close()
    live.server.stop(0.5)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """A server shared by the tests of one module (tests use distinct account ids)."""
    settings = load_settings(overrides={"log": {"level": "debug"},
                                        "state": {"initial_accounts": 256}})
    srv = _start(settings)
    yield srv
    _stop(srv)


@pytest.fixture()
def fresh() -> Iterator[Live]:
    """A server of its own, for tests that count state."""
    srv = _start(load_settings(overrides={"log": {"level": "debug"}}))
    yield srv
    _stop(srv)


_ids = itertools.count()


def uid(prefix: str) -> str:
    """A unique id per call, so tests sharing a server never collide."""
    return f"{prefix}-{next(_ids):05d}"


def recent(minutes_ago: float = 60.0) -> dt.datetime:
    """A timestamp in the recent past (event times may not be in the future)."""
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
