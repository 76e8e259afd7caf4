"""Shared fixtures: a real gRPC server on a free port, clients holding role tokens, and a real
redis-server of the test's own."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from screening import engine as _engine_module
from screening.auth import ROLES, Authenticator
from screening.client import ScreeningClient, transaction
from screening.config import Settings, load_settings
from screening.logs import configure_logging
from screening.server import RunningServer, start_server
from screening.tls import ClientTls
from screening.v1 import screening_pb2 as pb

# the bank's token reports for BANK01 (the client helpers' default institution); the payment
# institution's names none
TOKENS: dict[str, tuple[str, str] | tuple[str, str, str]] = {
    f"test-token-{role}": (f"test-{role}", role, "BANK01") if role == "bank" else (f"test-{role}", role)
    for role in ROLES}
# a second bank (BANK02), for what one institution may not do to another's customers; known to
# the servers ``_start`` runs, with no client of its own in ``Live``
OTHER_BANK_TOKEN = "test-token-bank-02"
_OTHER_TOKENS: dict[str, tuple[str, str] | tuple[str, str, str]] = {
    OTHER_BANK_TOKEN: ("test-bank-02", "bank", "BANK02")}


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
    running = start_server(settings, masker=masker,
                           auth=Authenticator.with_tokens({**TOKENS, **_OTHER_TOKENS}), port=0)
    clients = {role: ScreeningClient(running.address, token)
               for token, (_, role, *_) in TOKENS.items()}
    for c in clients.values():
        c.wait_ready()
    return Live(running, log, clients)


def _stop(live: Live) -> None:
    for c in live.clients.values():
        c.close()
    live.server.stop(0.5)


def start_twins(settings: Settings) -> Iterator[tuple[Live, Live]]:
    """Two servers of the same settings (for decisions compared side by side); stopped after."""
    a = _start(settings)
    try:
        b = _start(settings)
    except BaseException:
        _stop(a)
        raise
    yield a, b
    _stop(b)
    _stop(a)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """A server shared by the tests of one module (tests use distinct account ids), with three
    weeks of history as a server in service has (one transfer then: rules that know every account
    is new to a server in its first week hold back, so a test may date events up to two weeks
    back; still in its 30-day learning period; ``fresh`` is a server just started)."""
    settings = load_settings(overrides={"log": {"level": "debug"},
                                        "state": {"initial_accounts": 256}})
    srv = _start(settings)
    give_history(srv.bank, days=21)
    yield srv
    _stop(srv)


@pytest.fixture()
def fresh() -> Iterator[Live]:
    """A server of its own, for tests that count state or compare decisions with replay (its
    latency budget is wide, so a busy machine never skips the graph stage: replay never does)."""
    srv = _start(load_settings(overrides={"log": {"level": "debug"},
                                          "server": {"latency_budget_ms": 1000.0}}))
    yield srv
    _stop(srv)


_ids = itertools.count()


def uid(prefix: str) -> str:
    """A unique id per call, so tests sharing a server never collide."""
    return f"{prefix}-{next(_ids):05d}"


def give_history(client: ScreeningClient, days: float, **kw: Any) -> None:
    """One transfer between two new accounts ``days`` ago: the server has that much history
    (past its first week when more than 7, when every account is new to it)."""
    client.screen(transaction(uid("t"), recent(days * 24 * 60), uid("history-payer"),
                              uid("history-payee"), 10_000, **kw))


def recent(minutes_ago: float = 60.0) -> dt.datetime:
    """A timestamp in the recent past (event times may not be in the future)."""
    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)


# ---------------------------------------------------------------- a real redis-server
REQUIRE_REDIS = os.environ.get("SCREENING_REQUIRE_REDIS") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Servers the tests run as processes (`screening serve`, CLI commands) read SCREENING_* from the
# environment. Their fixed memory is mostly the graph's edge slots (64 M by default, 5.5 GiB with
# a store), which a server refuses to start without; the tests share the machine's memory with
# the test process itself, so their servers reserve 4 M edge slots (a test passes its own
# settings where it tests these). In-process servers take no environment (load_settings).
TEST_SERVER_ENV = {"SCREENING_GRAPH__MAX_EDGES": str(1 << 22)}
for _name, _value in TEST_SERVER_ENV.items():
    os.environ.setdefault(_name, _value)


# In-process servers plan their fixed memory against what is available now, and this process
# holds several GiB by the end of the suite (it shares the machine with every server it ran),
# which left late in-process servers "room for only 0 accounts" on a busy machine. They plan
# against the machine's physical memory instead, as if the test process held none; the planner
# itself is tested with explicit figures (tests/screening/test_memory.py), never through this.
# (read once here: tests that fake os.sysconf to test other checks do not change it)
_PHYSICAL_MEMORY = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _physical_memory() -> int:
    return _PHYSICAL_MEMORY


_engine_module.available_memory = _physical_memory


def server_env() -> dict[str, str]:
    """This process's environment without its SCREENING_* settings, for a server process whose
    settings a test gives itself; only the small graph reservation above stays."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCREENING_")}
    return {**env, **TEST_SERVER_ENV}


def serve_process(args: list[str], port: int, action: Callable[[ScreeningClient], None], *,
                  token: str | None = None, env: Mapping[str, str] | None = None,
                  cwd: Path | None = None,
                  signals: Callable[[ScreeningClient, subprocess.Popen[str]], None] | None = None,
                  tls: ClientTls | None = None) -> tuple[int, str]:
    """Run `screening serve` as its own process, do `action` once it is SERVING (or `signals`,
    which also gets the process, to signal it), then SIGTERM it. With ``tls`` the client
    connects with it (the dev server certificate is for 127.0.0.1 too).

    Returns (exit status, stderr): the tests look at how it shut down and what it logged.
    """
    proc = subprocess.Popen([sys.executable, "-m", "screening", "serve", "--port", str(port), *args],
                            stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=None if env is None else dict(env))
    try:
        with ScreeningClient(f"127.0.0.1:{port}", token, tls=tls) as client:
            # generous: on a loaded 2-core machine a start that loads every kernel takes a while
            deadline = time.time() + 180
            while True:
                try:
                    if client.is_serving():
                        break
                except grpc.RpcError:
                    pass
                if proc.poll() is not None:  # it gave up: say why at once, not after the deadline
                    raise AssertionError(f"server exited {proc.returncode} before SERVING: "
                                         f"{proc.communicate(timeout=30)[1][-2000:]}")
                assert time.time() < deadline, "server did not become SERVING"
                time.sleep(0.1)
            if signals is not None:
                signals(client, proc)
            else:
                action(client)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        reap(proc)
    return proc.returncode, err


T = TypeVar("T")


def play_in_batches(events: Iterable[tuple[T, Any]], twins: Sequence[Live],
                    screen: Callable[[list[T]], None], batch: int) -> int:
    """Play a stream into twin servers as a bank and an operator would: transactions in batches
    of ``batch`` (``screen`` gets each batch's items), every call reported to each twin between
    them, then the first full batch once more (duplicates). ``events`` pairs an item with its
    request (``to_requests``); returns the size of the batch sent twice."""
    pending: list[T] = []
    first: list[T] = []

    def flush() -> None:
        if pending:
            screen(list(pending))
            pending.clear()

    for item, request in events:
        if isinstance(request, pb.Transaction):
            pending.append(item)
            if len(pending) == batch:
                first = first or list(pending)
                flush()
        else:
            flush()
            for srv in twins:
                srv.client("telecom").report_call(request)
    flush()
    if first:
        screen(first)
    return len(first)


def reap(proc: subprocess.Popen[Any]) -> None:
    """Kill ``proc`` if it still runs and close its pipes: a pipe left open is collected later,
    in another test, whose ResourceWarning then fails that test."""
    if proc.poll() is None:
        proc.kill()
    if proc.stdout is None and proc.stderr is None and proc.stdin is None:
        proc.wait(30)
        return
    try:
        proc.communicate(timeout=30)
    except (ValueError, OSError):  # already read to the end and closed
        proc.wait(30)


class RedisProcess:
    """A redis-server of its own: free port, own directory, no persistence; start/stop at will."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture()
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A running redis-server for one test (skipped without the binary, unless required)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if REQUIRE_REDIS:
            pytest.fail("redis-server is not on PATH and SCREENING_REQUIRE_REDIS=1 "
                        "(scripts/test.sh installs it: apt-get install redis-server)")
        pytest.skip("redis-server is not on PATH")
    proc = RedisProcess(binary, tmp_path_factory.mktemp("redis"))
    proc.start()
    yield proc
    proc.stop()


# ---------------------------------------------------------------- a request cutting into a batch
class CutIn:
    """Orders a single-transaction request between the chunks of a batch, without timing.

    Installed on an engine (its ``_screen_rows``, the step every chunk and every request goes
    through): when the batch's first chunk has been screened, ``request`` starts in a thread,
    and the chunk returns only once that request waits for the engine's lock (nothing else may
    take the lock meanwhile: the engine's prefiller must be stopped); the batch's next chunk,
    once the request was screened, waits until ``request`` returned (it needs no lock by then).
    ``order`` records "chunk", "cut in" (the request screened) and "answered" (returned).
    """

    def __init__(self, engine: Any, request: Callable[[], object], timeout_s: float = 60.0) -> None:
        self.engine = engine
        self.request = request
        self.timeout_s = timeout_s
        self.order: list[str] = []
        self.answered = threading.Event()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self._inner = engine._screen_rows
        engine._screen_rows = self._screen_rows

    def _screen_rows(self, batch_in: Any, *args: Any) -> Any:
        if len(batch_in) == 1:
            self.order.append("cut in")
            return self._inner(batch_in, *args)
        if self.order.count("chunk") == 1 and "cut in" in self.order:
            self.answered.wait(self.timeout_s)  # the request passed the engine: it returns
        self.order.append("chunk")
        out = self._inner(batch_in, *args)
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
            deadline = time.monotonic() + self.timeout_s
            while (self.engine._lock.waiting == 0 and not self.answered.is_set()
                   and time.monotonic() < deadline):
                time.sleep(0.001)
        return out

    def _run(self) -> None:
        try:
            self.request()
        except BaseException as exc:  # re-raised in the test by join()
            self.error = exc
        self.order.append("answered")
        self.answered.set()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(self.timeout_s)
        if self.error is not None:
            raise self.error
