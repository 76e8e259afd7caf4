"""The command line as a user runs it: real processes, real files, real signals."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from screening.auth import add_token
from screening.cli import build_parser, main
from screening.client import ScreeningClient, transaction
from screening.demo import WarmProgress, _width, _wrap, run_demo
from screening.logs import get_logger
from tests.conftest import free_port, recent, serve_process, server_env

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_the_commands(capsys) -> None:  # type: ignore[no-untyped-def]
    """`screening --help` names every command."""
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for cmd in ("serve", "demo", "token", "policy", "features"):
        assert cmd in out


def _parsers(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subcommand's parser under it, with the command line that reaches it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    """Each subcommand, option and positional argument, at every level, says what it is for in
    `--help`."""
    missing = []
    for path, parser in _parsers(build_parser(), "screening"):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                described = {choice.dest for choice in action._choices_actions if choice.help}
                missing += [f"{path} {name}" for name in action.choices if name not in described]
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_version_prints_the_package_version(capsys) -> None:  # type: ignore[no-untyped-def]
    """`screening --version` (before or after a subcommand) prints the version of pyproject.toml
    and exits 0."""
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for argv in (["--version"], ["serve", "--version"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        assert capsys.readouterr().out == f"screening {expected}\n"


def test_config_is_taken_before_or_after_the_subcommand(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """`--config` works anywhere on the line: `screening serve --config x.toml` as well as
    `screening --config x.toml serve`; given after, it is not reset by the subcommand."""
    import screening.logs
    import screening.server
    from screening.masking import Masker

    for name in [k for k in os.environ if k.startswith("SCREENING_")]:
        monkeypatch.delenv(name)
    store = tmp_path / "store"
    store.mkdir()
    config = tmp_path / "x.toml"
    config.write_text(f'[server]\nport = 50987\n\n[storage]\nbackend = "file"\npath = "{store}"\n')
    for argv in (["checkpoint", "inspect", "--config", str(config)],
                 ["checkpoint", "--config", str(config), "inspect"],
                 ["--config", str(config), "checkpoint", "inspect"]):
        assert main(argv) == 1, argv
        assert capsys.readouterr().out == f"no checkpoint in file {store}\n"

    ports: list[int] = []

    def start_server(settings, masker):  # type: ignore[no-untyped-def]
        ports.append(settings.server.port)
        raise KeyboardInterrupt  # stop here: the settings are what this test looks at

    monkeypatch.setattr(screening.logs, "configure_logging", lambda _settings: Masker())
    monkeypatch.setattr(screening.server, "start_server", start_server)
    assert main(["serve", "--no-auth", "--config", str(config)]) == 130
    assert main(["--config", str(config), "serve", "--no-auth"]) == 130
    assert ports == [50987, 50987]


def test_policy_check_reports_line_and_exit_code(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A bad policy file: exit status 2 and file:line on stderr; a good one: OK."""
    bad = tmp_path / "p.toml"
    bad.write_text('[policy]\nversion = "1"\n\n[[rule]]\ncode = "X_Y"\nmessage = "m"\n'
                   'action = "WARN"\nwhen = ["amount >= 1", "nope > 2"]\n')
    assert main(["policy", "check", str(bad)]) == 2
    assert f"{bad}:8: rule X_Y: unknown feature 'nope'" in capsys.readouterr().err
    assert main(["policy", "check"]) == 0
    assert "OK" in capsys.readouterr().out


def test_token_create_stores_only_the_hash(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The printed token is not in the file; its sha256 is."""
    tokens = tmp_path / "tokens.toml"
    assert main(["token", "create", "--role", "police", "--name", "desk-7", "--file", str(tokens)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    text = tokens.read_text()
    assert token not in text and 'role = "police"' in text
    assert oct(tokens.stat().st_mode & 0o777) == "0o600"


def test_token_create_prints_only_the_token_on_stdout(tmp_path: Path) -> None:
    """`TOKEN=$(screening token create ...)` captures the token alone; the note saying it is
    shown once goes to stderr."""
    from screening.auth import Authenticator

    tokens = tmp_path / "tokens.toml"
    proc = subprocess.run([sys.executable, "-m", "screening", "token", "create", "--role", "police",
                           "--name", "desk-8", "--file", str(tokens)],
                          capture_output=True, text=True, timeout=60, check=True)
    token = proc.stdout.removesuffix("\n")
    assert token and "\n" not in token and " " not in token
    caller = Authenticator.from_file(tokens).caller([("authorization", f"Bearer {token}")])
    assert caller is not None and caller.role == "police"
    assert "shown once" in proc.stderr and token not in proc.stderr


def test_bank_token_names_the_institution_it_reports_for(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`token create --institution` binds a bank token to an institution the server reads back;
    a police token cannot name one."""
    from screening.auth import Authenticator, hash_token
    from screening.errors import ConfigError

    tokens = tmp_path / "tokens.toml"
    assert main(["token", "create", "--role", "bank", "--name", "lvtr desk", "--institution",
                 "BANK07", "--file", str(tokens)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    caller = Authenticator.from_file(tokens).caller([("authorization", f"Bearer {token}")])
    assert caller is not None and (caller.role, caller.institution) == ("bank", "BANK07")
    assert main(["token", "create", "--role", "police", "--name", "x", "--institution", "B",
                 "--file", str(tokens)]) == 2
    assert "only bank and payment tokens name an institution" in capsys.readouterr().err
    tokens.write_text(f'[tokens]\n"{hash_token("t")}" = {{ role = "bank", institution = 7 }}\n')
    try:
        Authenticator.from_file(tokens)
        raise AssertionError("a numeric institution was accepted")
    except ConfigError as exc:
        assert "institution must be text" in str(exc)


def test_output_to_a_reader_that_left_ends_quietly() -> None:
    """`screening features | head` and the like: when the reader of stdout has closed the pipe,
    the command exits 141 (128 + SIGPIPE, as other Unix tools do) and prints no traceback."""
    for argv in (["features"], ["policy", "show"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader has gone before the first write: always EPIPE
        try:
            proc = subprocess.run([sys.executable, "-m", "screening", *argv], stdout=write_end,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        finally:
            os.close(write_end)
        assert (proc.returncode, proc.stderr) == (141, ""), argv


def test_serve_refuses_to_start_without_tokens(tmp_path: Path) -> None:
    """No tokens and no --no-auth: a clear message and exit status 2, not an open server."""
    env = server_env()
    proc = subprocess.run([sys.executable, "-m", "screening", "serve", "--port", "0"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "no tokens configured" in proc.stderr


def test_serve_process_answers_then_drains_on_sigterm(tmp_path: Path) -> None:
    """`screening serve` as a process: SERVING, decides, exits 0 on SIGTERM, logs JSON masked."""
    tokens = tmp_path / "tokens.toml"
    assert main(["token", "create", "--role", "bank", "--name", "t", "--file", str(tokens)]) == 0
    # the created token is printed, not stored: add another whose value the test knows
    token = add_token(tokens, "bank", "cli-test")

    def screen_one(client: ScreeningClient) -> None:
        d = client.screen(transaction("cli-1", recent(), "6222000099998888", "6222000077776666", 100))
        assert d.transaction_id == "cli-1"

    status, err = serve_process(["--tokens", str(tokens)], free_port(), screen_one,
                                token=token, cwd=tmp_path)
    assert status == 0
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    warming = events.index("serving")
    # no TLS on loopback: said once; then each kernel step, then serving
    assert events[0] == "plaintext" and events.count("plaintext") == 1
    assert warming >= 3 and set(events[1:warming]) == {"warming"}
    assert "stopping" in events and events[-1] == "stopped"
    assert "6222000099998888" not in err


def test_demo_plays_every_scenario(tmp_path: Path) -> None:
    """The demo prints a decision of each kind and the access-control checks."""
    out = io.StringIO()
    assert run_demo(out, tmp_path / "logs" / "demo") == 0  # a --log-dir not made yet is made
    tmp_path = tmp_path / "logs" / "demo"
    text = out.getvalue()
    for expected in ("STOP_PAYMENT", "FREEZE", "HOLD", "WARN", "BLOCK", "LARGE_TRANSFER_ORGANISATION_OUT",
                     "PONZI_RETURNS", "MULE_PASS_THROUGH", "REPEAT_TO_WARNED_PAYEE",
                     "REPEAT_TO_STOPPED_PAYEE", "duplicate", "INVALID_ARGUMENT",
                     "PERMISSION_DENIED", "UNAUTHENTICATED"):
        assert expected in text, expected
    assert (tmp_path / "server.log").stat().st_size > 0
    # the kernel warm-up is shown step by step (the first start compiles for a minute or more)
    assert "loading the screening kernels" in text
    assert re.search(r"^  feature kernels \(transactions, calls, policy\) \.* ?\d+\.\d s$", text, re.M)
    assert re.search(r"^  graph detectors \.* ?\d+\.\d s$", text, re.M)
    assert "[STR] suspicious transaction report" in text  # the flags are explained
    # every call of the day is in the audit trail, whose chain verifies
    assert re.search(r"^  OK: [\d,]+ records in 1 file\(s\)", text, re.M)
    assert "decision" in text and "watchlist 1" in text
    # the log file is closed (not left to the collector: a ResourceWarning in whatever runs
    # next), and whatever logs after it in this process through loggers structlog bound to it
    # does not fail; what they write is dropped
    size = (tmp_path / "server.log").stat().st_size
    get_logger("screening.test").info("after_demo")
    assert (tmp_path / "server.log").stat().st_size == size


def test_demo_table_wraps_between_words_and_aligns_wide_characters() -> None:
    """Event text breaks between words, never mid-word; a Chinese memo counts two columns per
    character so the next column stays aligned; only a word longer than a line is cut."""
    assert _wrap("fraudster calls back: wang pays the same account again", 44) == [
        "fraudster calls back: wang pays the same", "account again"]
    assert _width("investor 1 -> fund-co ¥10,000 '理财投资款'") == 42  # 32 + 5 x 2
    lines = _wrap("memo '理财投资款理财投资款' x", 12)
    assert all(_width(line) <= 12 for line in lines)
    assert "".join(lines).replace(" ", "") == "memo'理财投资款理财投资款'x"
    assert _wrap("", 10) == [""]


def test_warm_progress_ticks_while_a_step_runs() -> None:
    """A long step shows dots while it runs, then its time; the next step starts a new line."""
    out = io.StringIO()
    progress = WarmProgress(out, tick_s=0.01)
    progress("compiling")
    deadline = time.monotonic() + 10
    while "." not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    progress("loading")
    progress.done()
    first, second = out.getvalue().splitlines()
    assert re.fullmatch(r"  compiling \.+ \d+\.\d s", first)
    assert re.fullmatch(r"  loading \.* ?\d+\.\d s", second)


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _serve_with(monkeypatch, stuck: int, error: Exception | None) -> list[int]:  # type: ignore[no-untyped-def]
    """`screening serve` with the server faked: ``stuck`` calls still holding threads after it
    stopped, and ``error`` raised by serve_forever (None: stopped by a signal)."""
    import screening.logs
    import screening.server
    from screening.masking import Masker

    class Running:
        pass

    running = Running()
    running.stuck = stuck  # type: ignore[attr-defined]

    def serve_forever(_running: object, _grace: float) -> None:
        if error is not None:
            raise error

    def leave(code: int) -> None:
        raise _Exited(code)

    monkeypatch.setattr(screening.logs, "configure_logging", lambda _settings: Masker())
    monkeypatch.setattr(screening.server, "start_server", lambda _settings, masker: running)
    monkeypatch.setattr(screening.server, "serve_forever", serve_forever)
    monkeypatch.setattr(os, "_exit", leave)
    try:
        return [main(["serve", "--no-auth"])]
    except _Exited as exc:
        return [-1, exc.code]


def test_serve_leaves_without_stuck_calls_whether_stopped_or_its_store_was_taken(
        monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Stopped with calls grpc could not finish, `screening serve` exits without waiting for
    their threads: 0 after a signal, 2 (and the one line saying why) when another server took
    its store; with none left it returns as usual."""
    from screening.errors import StoreBusy

    taken = StoreBusy("storage x: another server took the store while this one could not reach "
                      "it (host rival pid 7); stopped")
    assert _serve_with(monkeypatch, 0, None) == [0]
    assert _serve_with(monkeypatch, 3, None) == [-1, 0]
    capsys.readouterr()
    assert _serve_with(monkeypatch, 0, taken) == [2]
    assert capsys.readouterr().err == f"screening: {taken}\n"
    assert _serve_with(monkeypatch, 3, taken) == [-1, 2]
    assert capsys.readouterr().err == f"screening: {taken}\n"


def test_config_show_prints_effective_settings_with_sources_and_masks_secrets(
        tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`screening config show`: file < environment < flags, each changed value says where it
    came from; the masking key never appears; the output reads back as a config file."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nport = 6001\n[graph]\nhub_degree = 40\n")
    monkeypatch.setenv("SCREENING_LOG__MASK_KEY", "very-secret-key")
    monkeypatch.setenv("SCREENING_SERVER__MAX_QUEUE", "8")
    assert main(["config", "show", "--config", str(cfg), "--metrics-port", "9464"]) == 0
    out = capsys.readouterr().out
    assert "very-secret-key" not in out and 'mask_key = "***"' in out
    assert "port = 6001  # file" in out and "hub_degree = 40  # file" in out
    assert "max_queue = 8  # env SCREENING_SERVER__MAX_QUEUE" in out
    assert "port = 9464  # command-line flag" in out
    data = tomllib.loads(out)
    assert data["metrics"]["port"] == 9464 and data["server"]["max_queue"] == 8


def test_config_show_takes_every_settings_flag_of_serve(capsys) -> None:  # type: ignore[no-untyped-def]
    """What `serve FLAGS` would run with is what `config show FLAGS` prints: the same flags,
    applied the same way (tokens, TLS, logging, Flight, --no-auth among them)."""
    assert main(["config", "show", "--tokens", "/srv/tokens.toml", "--tls-cert", "/srv/s.pem",
                 "--tls-key", "/srv/s.key", "--log-level", "debug", "--flight-port", "7000",
                 "--no-auth"]) == 0
    out = capsys.readouterr().out
    for line in ('tokens_file = "/srv/tokens.toml"  # command-line flag',
                 'cert_file = "/srv/s.pem"  # command-line flag',
                 'key_file = "/srv/s.key"  # command-line flag',
                 'level = "debug"  # command-line flag', "port = 7000  # command-line flag",
                 "enabled = false  # command-line flag"):
        assert line in out, line
    serve = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["serve"]._actions}
    config = build_parser()._subparsers._group_actions[0].choices["config"]
    show = config._subparsers._group_actions[0].choices["show"]
    assert serve <= {a.dest for a in show._actions}


def test_shadow_report_reads_a_shadow_log_and_names_a_bad_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`screening shadow report LOG` prints the comparison; a broken line is exit 2 naming it."""
    log = tmp_path / "shadow.jsonl"
    rows = [
        {"kind": "decision", "shadow": "cand-1", "active": "default-1", "transaction_id": "t1",
         "event_time": "2026-12-01T00:00:00.000Z", "amount_fen": 1_000_000,
         "active_action": "ALLOW", "active_flags": 0, "active_reasons": [],
         "shadow_action": "STOP_PAYMENT", "shadow_flags": 6, "shadow_reasons": ["NEW_RULE"]},
        {"kind": "totals", "shadow": "cand-1", "decisions": 40, "at": "2026-12-01T00:00:01.000Z"},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["shadow", "report", str(log)]) == 0
    out = capsys.readouterr().out
    assert "shadow policy cand-1" in out and "40 transactions decided by both" in out
    money = next(line for line in out.splitlines() if line.strip().startswith("money stopped"))
    assert money.split()[-2:] == ["¥0.00", "¥10,000.00"]
    log.write_text(log.read_text() + "{not json\n")
    assert main(["shadow", "report", str(log)]) == 2
    assert f"{log}:3: not a JSON line" in capsys.readouterr().err


def test_compile_fills_the_cache_once_and_then_has_nothing_to_do(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`screening compile` runs every warm-up step (the graph's too), in two processes when the
    cache lacks kernels on both sides, and says so; with the cache full it has nothing to do."""
    import screening._warm as warm

    assert main(["compile"]) == 0  # the suite's cache is full: nothing compiles
    assert "nothing to compile" in capsys.readouterr().out
    ran: list[str] = []

    def recorded(step: warm.Step) -> warm.Step:
        def run(inputs: warm.KernelInputs) -> None:
            ran.append(step.name)
            step.run(inputs)
        return dataclasses.replace(step, run=run)

    monkeypatch.setattr(warm, "STEPS", tuple(recorded(s) for s in warm.STEPS))
    monkeypatch.setattr(warm, "cold_steps", lambda steps: list(steps))  # as if the cache were empty
    assert main(["compile"]) == 0
    out = capsys.readouterr().out
    assert f"{len(warm.STEPS)} of {len(warm.STEPS)} steps missing" in out
    assert "second process" in out and re.search(r"^compiled in \d+\.\d s$", out, re.M)
    assert sorted(ran) == sorted(s.name for s in warm.STEPS)  # graph kernels included
