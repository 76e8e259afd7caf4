"""Optional cross-check with h2load, a C HTTP/2 load generator (Debian package nghttp2-client).

A Python generator on 2 cores caps what it can measure; h2load costs far less CPU per request,
so it shows how many unary calls per second each server process itself can answer. It replays
ONE serialized request, so against the service every call after the first carries the same
transaction id and takes the cheap idempotent (duplicate) path; and it cannot see gRPC status
codes (they travel in trailers). These figures are therefore a ceiling for the gRPC layer, not
a screening figure: the unique-id Python generator stays the primary measure.
Skipped, and said so in the JSON, when ``h2load`` is not on PATH.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["available", "capacity"]


def available() -> bool:
    return shutil.which("h2load") is not None


def capacity(address: str, method: str, message: bytes, token: str = "", *, duration_s: float = 3.0,
             clients: int = 2, in_flight: int = 16, rate_per_s: float | None = None,
             headers: Sequence[str] = (), late_ms: float | None = None) -> dict[str, Any]:
    """Closed loop, ``clients`` connections x ``in_flight`` streams, as fast as answered; with
    ``rate_per_s``, at most that many requests a second in all (h2load's ``--rps`` per client:
    a paced loop, so a server slower than the rate is measured at its own pace). ``headers``
    are sent on every request as ``"name: value"`` (e.g. ``"grpc-timeout: 1000m"``); with
    ``late_ms``, ``late`` counts the answers that took at least that long."""
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        body = Path(tmp) / "body.bin"
        body.write_bytes(b"\x00" + struct.pack(">I", len(message)) + message)
        log = Path(tmp) / "requests.tsv"
        args = ["h2load", "-d", str(body), "-H", "content-type: application/grpc",
                "-H", "te: trailers", "-c", str(clients), "-m", str(in_flight),
                "-D", f"{duration_s:g}", "--log-file", str(log)]
        for header in ([f"authorization: Bearer {token}"] if token else []) + list(headers):
            args += ["-H", header]
        if rate_per_s is not None:
            args.append(f"--rps={rate_per_s / clients:g}")
        args.append(f"http://{address}{method}")
        proc = subprocess.run(args, capture_output=True, text=True, timeout=duration_s + 60)
        text = proc.stdout
        rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
        counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                           r"(\d+) failed, (\d+) errored, (\d+) timeout", text)
        lat = np.loadtxt(log, ndmin=2)[:, 2] / 1000.0 if log.exists() and log.stat().st_size else None
    out: dict[str, Any] = {
        "generator": "h2load (C), " + ("closed loop" if rate_per_s is None
                                       else f"paced at {rate_per_s:g}/s"),
        "clients": clients,
        "in_flight_per_client": in_flight,
        "duration_s": duration_s,
        "exit_code": proc.returncode,
        "requests_per_s": float(rate.group(1)) if rate else None,
    }
    if counts:
        # started - done: still unanswered when the duration ended (h2load drops them from its
        # latency figures)
        out.update(total=int(counts.group(1)), started=int(counts.group(2)),
                   done=int(counts.group(3)), succeeded=int(counts.group(4)),
                   failed=int(counts.group(5)), errored=int(counts.group(6)),
                   timeouts=int(counts.group(7)))
    out["summary"] = [line.strip() for line in text.splitlines()
                      if line.strip().startswith(("finished in", "requests:", "status codes:"))]
    if lat is not None and lat.size:
        if late_ms is not None:
            out["late"] = int((lat >= late_ms).sum())
        p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
        out.update(p50_ms=round(float(p50), 3), p99_ms=round(float(p99), 3),
                   p99_9_ms=round(float(p999), 3), max_ms=round(float(lat.max()), 3))
    if proc.returncode != 0:
        out["stderr"] = (proc.stderr or text)[-1000:]
    return out
