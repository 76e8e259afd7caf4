"""The servers under test, each in a process of its own: the screening service and the echo.

The service is started exactly as an operator would (``python -m screening token create`` then
``python -m screening serve --port 0 --tokens FILE``, JSON logs at the default level), so the
figures are those of the shipped build. The echo baseline is ``python -m bench._echo``.
Their CPU time is read from /proc, so each step also reports server CPU per request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["ServerProcess", "machine_cpu", "process_cpu", "start_echo", "start_service"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _log: IO[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the process (all its threads) so far."""
        return process_cpu(self.pid)

    def rss_bytes(self) -> int:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads); 0 when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    vals = [int(x) for x in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    total = sum(vals[:8])
    return (total - idle) / _TICK, total / _TICK


def _wait_for(log_path: Path, proc: subprocess.Popen[bytes], match: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        for line in text.splitlines():
            if match in line:
                return line
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{text[-2000:]}")
        time.sleep(0.05)
    raise TimeoutError(f"{proc.args!r} not ready after {timeout} s (log: {log_path})")


def start_service(workdir: Path, env: Mapping[str, str] | None = None,
                  timeout: float = 300.0) -> tuple[ServerProcess, str]:
    """Create a bank token and start ``screening serve`` on a free port; returns (server, token)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tokens = workdir / "tokens.toml"
    tokens.unlink(missing_ok=True)
    full_env = {**os.environ, **(env or {})}
    out = subprocess.run(
        [sys.executable, "-m", "screening", "token", "create", "--role", "bank",
         "--name", "bench load generator", "--file", str(tokens)],
        check=True, capture_output=True, text=True, env=full_env)
    token = out.stdout.strip().splitlines()[-1].strip()
    log_path = workdir / "service.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "screening", "serve", "--port", "0", "--tokens", str(tokens)],
        stdout=log, stderr=subprocess.STDOUT, env=full_env)
    try:
        line = _wait_for(log_path, proc, '"serving"', timeout)
    except BaseException:
        proc.kill()
        log.close()
        raise
    port = int(json.loads(line)["port"])
    return ServerProcess("service", proc, port, log_path, log), token


def start_echo(workdir: Path, reply_bytes: Mapping[str, float], timeout: float = 60.0, *,
               aio: bool = False) -> ServerProcess:
    """Start the echo baseline answering each request kind with ``reply_bytes[kind]`` bytes
    (``aio``: the grpc.aio server instead of the threaded one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / ("echo-aio.log" if aio else "echo.log")
    log = log_path.open("wb")
    args = [sys.executable, "-m", "bench._echo", "--port", "0", *(["--aio"] if aio else [])]
    for kind, size in reply_bytes.items():
        args += ["--reply", f"{kind}={round(size)}"]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        line = _wait_for(log_path, proc, "PORT ", timeout)
    except BaseException:
        proc.kill()
        log.close()
        raise
    return ServerProcess("baseline-aio" if aio else "baseline", proc, int(line.split()[1]),
                         log_path, log)
