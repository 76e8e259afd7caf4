"""Structural checks: generated code is fresh, and dependencies point one way."""

from __future__ import annotations

import ast
from pathlib import Path

from screening.protogen import ROOT, generate


def test_generated_protobuf_code_is_up_to_date(tmp_path: Path) -> None:
    """Regenerating from proto/ gives exactly the committed screening/v1 files."""
    written = generate(tmp_path)
    assert written, "no proto files found"
    for path in written:
        committed = ROOT / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run python -m screening.protogen"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed} is stale: run python -m screening.protogen")


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_pure_packages_do_not_import_the_service_or_do_io() -> None:
    """features/ and graph/ import neither screening/ nor I/O, clock or logging modules."""
    forbidden = {"screening", "grpc", "redis", "structlog", "logging", "time", "socket", "os"}
    for package in ("features", "graph"):
        bad = _imports(package) & forbidden
        assert not bad, f"{package}/ imports {sorted(bad)}"
