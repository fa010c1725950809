"""Tables of the benchmark results: ratios quantscope / peer, targets, absolute values.

``markdown(results)`` renders ``bench/RESULTS.md``; ``print_tables(results)`` prints the same
tables with rich. Both read only the results dict written by :mod:`bench.run`.
"""

from __future__ import annotations

import math
from typing import Any

LAT_KEYS = ("b1t1", "b1t2", "b8t1", "b8t2")
TOOL_NAMES = {"quantscope": "quantscope", "ort": "onnxruntime.quantization", "tflite": "TFLite converter",
              "float": "float"}


def is_static(run: dict[str, Any]) -> bool:
    """A full-integer model calibrated on data: static-* of ours and ORT's, TFLite's int8."""
    return run["variant"].startswith("static-") or (run["tool"] == "tflite" and run["variant"] == "int8")


def _peer(section: dict[str, Any]) -> str:
    return section.get("peer", "ort")


def _peer_variant(section: dict[str, Any], variant: str) -> str:
    return "int8" if _peer(section) == "tflite" and variant.startswith("static-") else variant

# targets from issue 7, at the largest calibration set
TARGET_LOSS = 0.5
TARGET_TIME = 0.5
TARGET_RSS = 1 / 3
TARGET_LATENCY = 1.0
TARGET_SIZE = 0.02


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or any(map(math.isnan, (a, b))):
        return None
    return a / b


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def fmt_quality(task: str, q: float | None) -> str:
    if q is None:
        return "-"
    return f"{100 * q:.2f}%" if task == "accuracy" else f"{q:.4f}"


def fmt_loss(task: str, loss: float | None) -> str:
    if loss is None:
        return "-"
    return f"{100 * loss:+.2f} pt" if task == "accuracy" else f"{loss:.2e}"


def _num(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _n_max(section: dict[str, Any]) -> int:
    return max(r["samples"] for r in section["runs"] if r["samples"]) if any(
        r["samples"] for r in section["runs"]) else 0


def _rows_by(section: dict[str, Any]) -> dict[tuple[str, str, int | None], dict[str, Any]]:
    return {(r["tool"], r["variant"], r["samples"]): r for r in section["runs"]}


def _best_static(section: dict[str, Any], tool: str, n: int) -> dict[str, Any] | None:
    cands = [r for r in section["runs"] if r["tool"] == tool and is_static(r)
             and r["samples"] == n and r["status"] == "ok"]
    return max(cands, key=lambda r: r["quality"]) if cands else None


def runs_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Absolute values of every run of one model."""
    head = ["tool", "variant", "calib", "status", "quality", "loss", "quantize s", "peak RSS MB",
            "RSS at start MB", "size MB", *(f"ms {k}" for k in LAT_KEYS)]
    rows = []
    for r in section["runs"]:
        lat = r.get("latency_ms", {})
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')[:90]}"
        rows.append([
            TOOL_NAMES.get(r["tool"], r["tool"]), r["variant"], _num(r["samples"], "d"), status,
            fmt_quality(section["task"], r.get("quality")), fmt_loss(section["task"], r.get("loss")),
            _num(r.get("seconds"), ".2f"), _num(r.get("peak_rss_mb"), ".0f"), _num(r.get("rss_before_mb"), ".0f"),
            _num(r["size"] / 2**20 if r.get("size") else None, ".3f"),
            *(_num(lat.get(k), ".2f") for k in LAT_KEYS),
        ])
    return head, rows


def ratios_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """quantscope / peer for every variant both tools produced (same calibration set)."""
    head = ["variant", "calib", "quality loss", "quantize time", "peak RSS", "size", *(f"latency {k}" for k in LAT_KEYS)]
    by = _rows_by(section)
    rows = []
    for (tool, variant, n), ours in by.items():
        if tool != "quantscope":
            continue
        peer = by.get((_peer(section), _peer_variant(section, variant), n))
        if peer is None:
            continue
        if ours["status"] != "ok" or peer["status"] != "ok":
            rows.append([variant, _num(n, "d"), f"quantscope {ours['status']}, peer {peer['status']}", "", "", "",
                         *("" for _ in LAT_KEYS)])
            continue
        rows.append(_pair_row(variant, n, ours, peer))
    for n in sorted({r["samples"] for r in section["runs"] if r["samples"]}):
        ours, peer = _best_static(section, "quantscope", n), _best_static(section, _peer(section), n)
        if ours and peer:
            rows.append(_pair_row(f"best static ({ours['variant']} / {peer['variant']})", n, ours, peer))
    return head, rows


def _loss_ratio(ours: dict[str, Any], peer: dict[str, Any]) -> str:
    lo, lp = ours.get("loss"), peer.get("loss")
    if lo is None or lp is None:
        return "n/a"
    if lp <= 1e-12:
        return "peer lossless" + ("" if lo <= 1e-12 else " (ours not)")
    return fmt_ratio(max(lo, 0.0) / lp)


def _pair_row(label: str, n: int | None, ours: dict[str, Any], peer: dict[str, Any]) -> list[str]:
    lo, lp = ours.get("latency_ms", {}), peer.get("latency_ms", {})
    return [
        label, _num(n, "d"), _loss_ratio(ours, peer),
        fmt_ratio(_ratio(ours.get("seconds"), peer.get("seconds"))),
        fmt_ratio(_ratio(ours.get("peak_rss_mb"), peer.get("peak_rss_mb"))),
        fmt_ratio(_ratio(ours.get("size"), peer.get("size"))),
        *(fmt_ratio(_ratio(lo.get(k), lp.get(k))) for k in LAT_KEYS),
    ]


def targets(section: dict[str, Any], n: int) -> list[list[str]]:
    """The issue's targets for static-int8 at calibration size ``n``: measured, target, met?"""
    out: list[list[str]] = []
    by = _rows_by(section)
    ours, peer = _best_static(section, "quantscope", n), _best_static(section, _peer(section), n)

    def add(what: str, value: float | None, target: str, ok: bool | None, note: str = "") -> None:
        verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
        out.append([what, fmt_ratio(value) if value is not None else note or "n/a", target, verdict])

    if ours and peer:
        lo, lp = max(ours["loss"], 0.0), peer["loss"]
        if lp > 1e-12:
            add("quality loss, best vs best", lo / lp, f"<= {TARGET_LOSS}x", lo / lp <= TARGET_LOSS)
        else:
            add("quality loss, best vs best", None, f"<= {TARGET_LOSS}x", lo <= 1e-12, "peer lossless")
    else:
        add("quality loss, best vs best", None, f"<= {TARGET_LOSS}x", None,
            "peer produced no static model" if ours else "no quantscope static model")
    for cal in ("minmax", "percentile", "entropy"):
        o = by.get(("quantscope", f"static-{cal}", n))
        p = by.get((_peer(section), _peer_variant(section, f"static-{cal}"), n))
        if not o:
            continue
        killed = p is not None and p["status"] in ("out of memory", "timeout")
        for key, label, limit in (("seconds", "quantize time", TARGET_TIME), ("peak_rss_mb", "peak RSS", TARGET_RSS)):
            if p is None or o["status"] != "ok":
                continue
            if killed:  # the peer did not finish: its true value is at least what it reached
                bound = p.get(key) if key == "peak_rss_mb" else None
                r = _ratio(o.get(key), bound)
                # a peer killed for memory bounds the RSS ratio; its time is unknown
                add(f"{label}, {cal}", None, f"<= {limit:.2f}x", True if r is not None else None,
                    f"peer {p['status']}" + (f" (<= {r:.2f}x)" if r is not None else ""))
                continue
            if p["status"] != "ok":
                add(f"{label}, {cal}", None, f"<= {limit:.2f}x", None, f"peer {p['status']}")
                continue
            r = _ratio(o.get(key), p.get(key))
            add(f"{label}, {cal}", r, f"<= {limit:.2f}x", None if r is None else r <= limit)
    if ours and peer:
        for k in LAT_KEYS:
            r = _ratio(ours.get("latency_ms", {}).get(k), peer.get("latency_ms", {}).get(k))
            add(f"int8 latency {k}", r, f"<= {TARGET_LATENCY:.1f}x", None if r is None else r <= TARGET_LATENCY)
        r = _ratio(ours.get("size"), peer.get("size"))
        # "within 2 %" of the peer: smaller is fine
        add("size", r, f"<= {1 + TARGET_SIZE:.2f}x", None if r is None else r <= 1 + TARGET_SIZE)
    return out


# --------------------------------------------------------------------------- renderers


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    m, v, s = results["machine"], results["versions"], results["settings"]
    parts = [
        "# Benchmark: quantscope vs onnxruntime.quantization",
        "",
        f"Generated by `python -m bench.run` ({'quick smoke settings' if s['quick'] else 'full settings'}) on "
        f"{results['date']}" + (f" in {results['duration_s']} s." if results.get("duration_s") is not None
                                 else " (several invocations with --update, one model each; dates are their starts)."),
        "",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['platform']}",
        f"- **CPU flags**: {' '.join(m['flags'])} (VNNI: {'yes' if m['vnni'] else 'no'})",
        "- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "- **Settings**: calibration sets per model: " + ", ".join(
            f"{sec['name']} {sec.get('calib_sizes', s['calib_sizes'])}" for sec in results["models"]) + f"; calibrators {s['calibrations']}, equal calibration batches (the largest divisor of the set size up to 20) for both "
        f"tools' calibration; latency = median of up to {s['latency_rounds']} round-robin runs after warm-up; "
        f"quantization jobs killed above {s['mem_limit_gb']} GB RSS or {s['timeout_s']:.0f} s.",
        "",
        "How to read: every quantization ran in a fresh process; *quantize s* is the wall time of the "
        "call (model load, calibration, writing the file; interpreter start-up and imports excluded); "
        "*peak RSS* is that process's high-water mark (`VmHWM`; it includes the *RSS at start*, i.e. the imports of "
        "both libraries, in both tools' processes alike). The peer's static runs start from the output "
        "of `quant_pre_process` (its own row; not counted in its quantize time). Both tools read the "
        "calibration set as the same `.npz` shards, streamed in equal batches (20 for 100 and 1000 samples). *loss* is float quality "
        "minus quantized quality (points of accuracy, or 1 - cosine / 1 - IoU for fidelity tasks). "
        "Ratios are quantscope / peer: below 1 is better for quantscope in every column. "
        "The machine is shared with other work, so timings are noisy; latency is timed round-robin "
        "across the models so load hits all of them alike.",
        "",
    ]
    if results.get("skipped"):
        parts += ["## Skipped", ""] + [f"- **{k}**: {why}" for k, why in results["skipped"].items()] + [""]
    summary = []
    for sec in results["models"]:
        n = _n_max(sec)
        for row in targets(sec, n):
            summary.append([sec["name"], str(n), *row])
    if summary:
        parts += ["## Targets (static-int8, at each model's largest calibration set)", "",
                  _md_table(["model", "calib", "figure", "quantscope / peer", "target", "verdict"], summary), ""]
    for sec in results["models"]:
        parts += [f"## {sec['name']}", "", f"{sec['description']}. Quality: {sec['task']}. {sec['notes']}.", ""]
        head, rows = ratios_table(sec)
        parts += [f"### Ratios quantscope / {TOOL_NAMES[_peer(sec)]}", "", _md_table(head, rows), ""]
        head, rows = runs_table(sec)
        parts += ["### Absolute values", "", _md_table(head, rows), ""]
    return "\n".join(parts) + "\n"


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    for sec in results["models"]:
        n_max = _n_max(sec)
        for title, (head, rows) in (
            (f"{sec['name']}: quantscope / {TOOL_NAMES[_peer(sec)]}", ratios_table(sec)),
            (f"{sec['name']}: absolute values", runs_table(sec)),
        ):
            table = Table(title=title)
            for h in head:
                table.add_column(h)
            for r in rows:
                table.add_row(*r)
            console.print(table)
        table = Table(title=f"{sec['name']}: targets at {n_max} samples")
        for h in ("figure", "quantscope / peer", "target", "verdict"):
            table.add_column(h)
        for r in targets(sec, n_max):
            table.add_row(*r)
        console.print(table)
    for name, why in results.get("skipped", {}).items():
        console.print(f"[yellow]skipped {name}[/]: {why}")
