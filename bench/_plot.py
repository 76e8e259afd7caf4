"""The PNG: latency percentiles against offered rate, service beside the echo baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot"]

_PCTS = (("p50_ms", "p50", "o"), ("p99_ms", "p99", "s"), ("p99_9_ms", "p99.9", "^"))
_COLORS = {"service": "#c0392b", "baseline": "#2c6fbb"}


def _plain_axes(ax: Any, rates: list[float]) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    def fmt(v: float, _pos: int) -> str:
        return f"{v:,.0f}" if v >= 10 else f"{v:g}"

    if rates:
        ax.set_xticks(sorted(set(rates)))
    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)


def _panel(ax: Any, sweep: dict[str, Any], title: str, sla_ms: float) -> None:
    top = 0.0
    all_rates: list[float] = []
    notes = []
    for target in ("service", "baseline"):
        pts = sweep.get(target, [])
        if not pts:
            continue
        rates = [p["rate"] for p in pts]
        all_rates += rates
        for key, label, marker in _PCTS:
            vals = [max(p[key], 1e-3) for p in pts]
            top = max(top, *vals)
            alpha = {"p50": 0.45, "p99": 1.0, "p99.9": 0.7}[label]
            ax.plot(rates, vals, marker=marker, ms=5, lw=1.8 if target == "service" else 1.4,
                    ls="-" if target == "service" else "--", color=_COLORS[target],
                    alpha=alpha, label=f"{target} {label}")
            shared = [(r, v) for r, v, p in zip(rates, vals, pts, strict=True) if p.get("disturbed")]
            if shared:
                ax.plot([r for r, _ in shared], [v for _, v in shared], ls="none", marker=marker,
                        ms=5, mfc="white", color=_COLORS[target], alpha=alpha)
        sustained = sweep["max_sustained_rate"][target]
        if sustained["rate"]:
            ax.axvline(sustained["rate"], color=_COLORS[target], lw=1, ls=":", alpha=0.8)
        more = "" if sustained["limit_reached"] else " (all rates met it)"
        notes.append(f"{target}: {sustained['rate']:,.0f}/s{more}")
    ax.axhline(sla_ms, color="black", lw=1.2, ls="-.", label=f"SLA p99 {sla_ms:g} ms")
    ax.plot([], [], ls="none", marker="o", mfc="white", color="black",
            label="hollow: other processes used > 0.25 core during that step")
    ax.text(0.98, 0.03, "highest rate meeting the SLA\n" + "\n".join(notes),
            transform=ax.transAxes, ha="right", va="bottom", fontsize=9,
            bbox={"boxstyle": "round", "fc": "white", "ec": "#999999", "alpha": 0.9})
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("offered rate (requests/s, open loop)")
    ax.set_ylabel("latency from scheduled send (ms)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.set_ylim(bottom=0.1, top=max(top * 1.5, sla_ms * 3))
    _plain_axes(ax, all_rates)


def _ratio_panel(ax: Any, result: dict[str, Any]) -> None:
    all_rates: list[float] = []
    for kind, color in (("unary", "#7d3c98"), ("stream", "#d68910")):
        rows = result.get(kind, {}).get("ratio_to_baseline", [])
        if not rows:
            continue
        rates = [r["rate"] for r in rows]
        all_rates += rates
        for key, ls, marker in (("p50", "--", "o"), ("p99", "-", "s")):
            vals = [r[key] if r[key] is not None else float("nan") for r in rows]
            ax.plot(rates, vals, ls=ls, marker=marker, ms=5, color=color, label=f"{kind} {key}")
    ax.axhline(1.0, color="grey", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("service / baseline latency")
    ax.set_title("Ratio to the bare-gRPC baseline\n(the figure we track)", fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    _plain_axes(ax, all_rates)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Write the figure for one suite result to ``path`` (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sla = float(result["sla_ms"])
    fig, axes = plt.subplots(1, 3, figsize=(18, 7.4), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    if "unary" in result:
        _panel(axes[0], result["unary"], "Unary ScreenTransaction", sla)
    if "stream" in result:
        _panel(axes[1], result["stream"], "Bidi ScreenStream (2 streams)", sla)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=9, loc="lower center", ncol=4,
               bbox_to_anchor=(0.37, 0.045), frameon=False)
    _ratio_panel(axes[2], result)
    m = result["machine"]
    batch = result.get("batch", {})
    btxt = "; ".join(f"batch {s}: {b['service']['transactions_per_s']:,.0f} txn/s "
                     f"(baseline {b['baseline']['transactions_per_s']:,.0f})"
                     for s, b in batch.items())
    fig.suptitle(
        f"Screening service vs bare grpcio echo, {result['suite']} suite "
        f"({m['cpu_count']} cores, Python {m['python']}, grpcio {m['versions']['grpcio']}, "
        f"commit {m['git_commit'][:10]}{'+dirty' if m['git_dirty'] else ''}, {result['created']})",
        fontsize=12)
    fig.text(0.5, 0.01, btxt + f"   |   mix: {result.get('mix', {}).get('source', '?')}, "
             "unique transaction ids, latency from scheduled send time",
             ha="center", fontsize=9, color="#333333")
    fig.tight_layout(rect=(0, 0.17, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
