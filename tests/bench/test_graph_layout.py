"""The layout bench walks the same entries of the same lists three ways (real Numba kernels on
a small graph): its figures are comparable only if the walks agree."""

from __future__ import annotations

import json
from pathlib import Path

from bench.graph_layout import main, measure


def test_the_three_layouts_walk_the_same_entries() -> None:
    r = measure(nodes=500, edges=8_000, walks=300, steps=5, repeat=1)
    assert set(r["ns_per_entry"]) == {"linked, columns", "linked, one row per edge",
                                      "side by side"}
    assert len(set(r["checksum"].values())) == 1
    # each node holds 16 edges on average, so nearly every walk takes all 5 steps
    assert 0.9 * 300 * 5 <= r["entries_walked"] <= 300 * 5


def test_the_command_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "layout.json"
    assert main(["--nodes", "400", "--edges", "4000", "--walks", "100", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["edges"] == 4_000 and all(v > 0 for v in figures["ns_per_entry"].values())
