"""The result as Markdown tables (``<mode>.md`` beside the JSON; the README quotes it)."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown"]


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _sweep_table(sweep: dict[str, Any]) -> list[str]:
    base = {p["rate"]: p for p in sweep["baseline"]}
    ratio = {r["rate"]: r for r in sweep["ratio_to_baseline"]}
    rows = ["| offered/s | service p50 | p99 | p99.9 | max | SLA | baseline p50 | p99 | p99.9 | max | SLA "
            "| ratio p50 | ratio p99 | ratio p99.9 | other CPU (cores) |",
            "|---:|---:|---:|---:|---:|:-:|---:|---:|---:|---:|:-:|---:|---:|---:|---:|"]
    rates = sorted({p["rate"] for p in sweep["service"]} | set(base))
    svc = {p["rate"]: p for p in sweep["service"]}
    for rate in rates:
        s, b, r = svc.get(rate), base.get(rate), ratio.get(rate, {})
        cells = [f"{rate:,.0f}"]
        for p in (s, b):
            if p is None:
                cells += ["–"] * 5
            else:
                cells += [_f(p["p50_ms"]), _f(p["p99_ms"]), _f(p["p99_9_ms"]), _f(p["max_ms"]),
                          "ok" if p["meets_sla"] else "**miss**"]
        cells += [_f(r.get("p50")), _f(r.get("p99")), _f(r.get("p99_9"))]
        others = [p["other_processes_cpu_cores"] for p in (s, b) if p is not None]
        cells.append(_f(max(others)) if others else "–")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def markdown(result: dict[str, Any]) -> str:
    """Tables of every headline figure of one suite result (latencies in ms)."""
    m = result["machine"]
    sla = result["sla_ms"]
    out = [f"Suite `{result['suite']}`, {result['created']}, commit `{m['git_commit'][:10]}`"
           f"{' (dirty)' if m['git_dirty'] else ''}; {m['cpu_count']} cores ({m['cpu_model']}), "
           f"Python {m['python']}, grpcio {m['versions']['grpcio']}, numba {m['versions']['numba']}; "
           f"load average {m['load_average_at_start'][0]:.2f} at start. Command: "
           f"`{result['command']}`. Latency in ms from the scheduled send time; SLA: p99 <= {sla:g} ms "
           "with no errors or timeouts.", ""]
    pts = [p for kind in ("unary", "stream") for t in ("service", "baseline")
           for p in result.get(kind, {}).get(t, [])]
    if pts:
        disturbed = sum(bool(p.get("disturbed")) for p in pts)
        waited = result.get("load_generator", {}).get("waited_for_quiet_s", 0)
        out += [f"Shared machine: other processes used more than a quarter of a core during "
                f"{disturbed} of {len(pts)} latency steps (column *other CPU*; hollow markers in "
                f"the plot); the suite waited {waited:g} s in all for quiet before steps.", ""]
    for kind, title in (("unary", "Unary ScreenTransaction"), ("stream", "Bidi ScreenStream")):
        if kind not in result:
            continue
        sweep = result[kind]
        mx = sweep["max_sustained_rate"]

        def said(t: str, mx: dict[str, Any] = mx) -> str:
            r = mx[t]
            if not r["rate"]:
                return "none (the lowest offered rate missed it)"
            tail = "" if r["limit_reached"] else " (every offered rate met it)"
            return f"{r['rate']:,.0f}/s{tail}"

        out += [f"**{title}**: highest sustained rate under the SLA: service {said('service')}, "
                f"baseline {said('baseline')}.", ""]
        out += [*_sweep_table(sweep), ""]
    if "batch" in result:
        out += ["| ScreenBatch | service txn/s | baseline txn/s | ratio | service p50 / p99 per message "
                "| server CPU per txn |", "|---|---:|---:|---:|---:|---:|"]
        for size, b in result["batch"].items():
            s, base = b["service"], b["baseline"]
            label = (f"{size.removesuffix('-columnar')} per message, columnar reply"
                     if size.endswith("-columnar") else f"{size} per message")
            out.append(f"| {label} | {s['transactions_per_s']:,.0f} | "
                       f"{base['transactions_per_s']:,.0f} | "
                       f"{_f(b['ratio_to_baseline']['transactions_per_s'], 3)} | "
                       f"{_f(s['p50_ms'], 1)} / {_f(s['p99_ms'], 1)} ms | "
                       f"{_f(s['server_cpu_us_per_transaction'], 1)} µs |")
        out.append("")
    h2 = result.get("h2load", {})
    if "baseline" in h2:
        b, sv = h2["baseline"], h2["service"]
        out += [f"**h2load cross-check** (C generator, closed loop, 32 in flight, one request "
                f"replayed, so the service answers from its idempotency memory): baseline "
                f"{_f(b.get('requests_per_s'), 0)} calls/s (p99 {_f(b.get('p99_ms'))} ms), service "
                f"{_f(sv.get('requests_per_s'), 0)} calls/s (p99 {_f(sv.get('p99_ms'))} ms).", ""]
    elif "skipped" in h2:
        out += [f"h2load cross-check skipped: {h2['skipped']}.", ""]
    k = result.get("kernels", {}).get("summary")
    if k:
        single, batch = k["feature_update_single_us_per_event"], k["feature_update_batch1000_us_per_event"]
        ref_s, ref_b = k["reference_single_us_per_event"], k["reference_batch1000_us_per_event"]
        ref_p = k["policy_evaluation_reference_us"]
        out += ["| kernel (median) | 10 k accounts | 1 M accounts | plain-Python reference |",
                "|---|---:|---:|---:|",
                f"| feature update, 1 event per call | {_f(single['10k'])} µs | {_f(single['1M'])} µs "
                f"| {_f(ref_s) + ' µs' if ref_s else 'skipped: tests/reference.py absent'} |",
                f"| feature update, 1,000 per call | {_f(batch['10k'])} µs/event | "
                f"{_f(batch['1M'])} µs/event | "
                f"{_f(ref_b) + ' µs/event' if ref_b else 'skipped: tests/reference.py absent'} |",
                f"| policy evaluation (all rules, one row) | {_f(k['policy_evaluation_us'])} µs | | "
                f"{_f(ref_p) + ' µs' if ref_p else 'skipped'} |",
                f"| graph checks per transfer (60 k-edge graph) | {_f(k.get('graph_checks_us'))} µs | | "
                f"{_f(k.get('graph_checks_reference_us'))} µs |",
                ""]
    mem = result.get("memory")
    if mem:
        out += ["| accounts | feature arrays per account | resident per account (with ids) "
                "| per relationship | measured? |", "|---:|---:|---:|---:|---|"]
        for row in mem["measured"]:
            if row.get("measured"):
                out.append(f"| {row['accounts']:,} | {row['feature_bytes_per_account']:,} B | "
                           f"{row['total_rss_bytes_per_account']:,.0f} B | "
                           f"{row['bytes_per_pair_live']} B ({row['bytes_per_pair_slot']} B per slot) "
                           "| yes |")
        for row in mem["extrapolated"]:
            out.append(f"| {row['accounts']:,} | | {row['total_rss_bytes'] / 1e9:,.1f} GB in all | | "
                       f"no: {row['note']} |")
        out.append("")
    audit = result.get("audit", {})
    if "unary" in audit:
        out += ["| audit trail, CPU per decision | without the trail | request path added "
                "| writer thread | with / without |", "|---|---:|---:|---:|---:|"]
        for kind, label in (("unary", "ScreenTransaction"), ("batch1000", "ScreenBatch of 1,000")):
            a = audit[kind]
            out.append(f"| {label} | {a['handler_cpu_ns_without_median'] / 1000:,.1f} µs | "
                       f"{a['request_path_added_cpu_ns_median'] / 1000:,.2f} µs | "
                       f"{a['writer_cpu_ns_per_record'] / 1000:,.2f} µs | "
                       f"{a['ratio_with_to_without']:.3f} |")
        out += ["", f"Audit trail A/B in one process (`python -m bench.audit`): request path "
                    f"= handler thread CPU with minus without (median of block pairs; an A/A pair "
                    f"reads {audit['unary']['aa_noise_cpu_ns_median'] / 1000:,.2f} µs), writer = "
                    f"its own thread's CPU per record (build, sha256 chain, write, fsync); the "
                    f"enqueue alone is {audit['enqueue_cpu_ns']:,.0f} ns.", ""]
    return "\n".join(out)
