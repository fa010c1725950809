"""``bench/RESULTS.md`` and the terminal tables, from the results dict written by :mod:`bench.run`.

Per model: quantscope against float (every variant, its own targets), then quantscope against
each peer configuration (as its docs advise, and its defaults; settings stated per row), the
targets with their verdicts, and the absolute values of every run. Figures: :mod:`bench.figures`.
"""

from __future__ import annotations

from typing import Any

from bench import figures as F

VERDICT_NOTE = (
    "Verdicts: *met* / *not met* when the measurement is clear, *tie* when the two figures (or the figure "
    "and its target) differ by no more than the noise - 1.96 standard errors for quality, the 95 % bootstrap "
    "interval over paired round-robin rounds for latency - and *n/a* when a figure is missing. A target that "
    "asks quantscope to beat the peer is never *met* by a tie."
)


def fmt_quality(task: str, q: float | None, se: float | None = None) -> str:
    if q is None:
        return "-"
    scale, unit = (100, "%") if task == "accuracy" else (1, "")
    text = f"{scale * q:.2f}{unit}" if task == "accuracy" else f"{q:.4f}"
    return text + (f" ±{scale * 1.96 * se:.2g}" if se else "")


def fmt_loss(task: str, loss: float | None) -> str:
    if loss is None:
        return "-"
    return f"{100 * loss:+.2f} pt" if task == "accuracy" else f"{loss:.2e}"


def _num(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def float_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["variant", "calib", "quality", "loss", "size / float", *(f"time / float {k}" for k in F.LAT_KEYS),
            "loss target", "size target", "latency target"]
    rows = []
    for row in F.against_float(section):
        r, v, t = row["run"], row["verdicts"], row["targets"]
        if r["status"] != "ok":
            rows.append([r["variant"], _num(r["samples"], "d"), f"{r['status']}: {r.get('error', '')[:80]}",
                         *("" for _ in range(len(head) - 3))])
            continue
        rows.append([
            r["variant"], _num(r["samples"], "d"), fmt_quality(section["task"], r.get("quality"), r.get("quality_se")),
            fmt_loss(section["task"], r.get("loss")), F.fmt_ratio(row["size"]),
            *(F.fmt_interval(row["latency"].get(k)) for k in F.LAT_KEYS),
            f"<= {t['loss']:g}: {v['loss']}",
            f"<= {t['size']:.2f}x: {v['size']}" if "size" in t else "n/a",
            f"<= {t['latency']:.1f}x: {v['latency']}" if "latency" in t else "n/a (not an int8-arithmetic format)",
        ])
    return head, rows


def peer_table(section: dict[str, Any], peer: str, config: str) -> tuple[list[str], list[list[str]]]:
    """quantscope / peer for every variant both produced (same calibrator and set for ORT)."""
    head = ["variant", "calib", "quality loss (ours vs peer)", "quantize time", "peak RSS", "size",
            *(f"latency {k}" for k in F.LAT_KEYS), "peer settings"]
    rows = []
    for label, ours, theirs in F.pairs(section, peer, config):
        if not (F.ok(ours) and F.ok(theirs)):
            rows.append([label, _num(ours["samples"], "d"),
                         f"quantscope {ours['status']}, peer {theirs['status']}: {theirs.get('error', '')[:90]}",
                         "", "", "", *("" for _ in F.LAT_KEYS), theirs.get("settings", "")])
            continue
        rows.append(_pair_row(section, label, ours, theirs))
    for n in sorted({r["samples"] for r in section["runs"] if r["samples"]}):
        best = F.best_vs_best(section, peer, config, n)
        if best is not None:
            ours, theirs, cals = best
            rows.append(_pair_row(section, f"best vs best over {'/'.join(cals)} ({ours['variant']} / "
                                           f"{theirs['variant']})", ours, theirs))
    return head, rows


def _pair_row(section: dict[str, Any], label: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    task = section["task"]
    return [
        label, _num(ours["samples"], "d"), f"{fmt_loss(task, ours.get('loss'))} vs {fmt_loss(task, theirs.get('loss'))}",
        F.fmt_ratio(F.ratio(F.calibration_seconds(ours), theirs.get("seconds"))),
        F.fmt_ratio(F.ratio(ours.get("peak_rss_mb"), theirs.get("peak_rss_mb"))),
        F.fmt_ratio(F.ratio(ours.get("size"), theirs.get("size"))),
        *(F.fmt_interval(F.latency_ratio(ours, theirs, k)) for k in F.LAT_KEYS),
        theirs.get("settings", ""),
    ]


def runs_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Absolute values of every run of one model."""
    head = ["tool", "config", "variant", "calib", "status", "quality", "loss", "quantize s", "peak RSS MB",
            "RSS at start MB", "size MB", *(f"ms {k}" for k in F.LAT_KEYS)]
    rows = []
    for r in section["runs"]:
        lat = r.get("latency_ms", {})
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('error', '')[:90]}"
        rows.append([
            F.TOOL_NAMES.get(r["tool"], r["tool"]), r.get("config", ""), r["variant"], _num(r["samples"], "d"), status,
            fmt_quality(section["task"], r.get("quality")), fmt_loss(section["task"], r.get("loss")),
            _num(r.get("seconds"), ".2f"), _num(r.get("peak_rss_mb"), ".0f"), _num(r.get("rss_before_mb"), ".0f"),
            _num(r["size"] / 2**20 if r.get("size") else None, ".3f"),
            *(_num(lat.get(k), ".2f") for k in F.LAT_KEYS),
        ])
    return head, rows


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


def _peer_title(peer: str, config: str) -> str:
    how = {"docs": "configured as its docs advise", "defaults": "with its defaults"}.get(config, "")
    return f"{F.TOOL_NAMES.get(peer, peer)} {how}".strip()


def _scope(settings: dict[str, Any]) -> str:
    """What the run covered, against the default settings (every model, 100 and 1000 calibration samples)."""
    if settings["quick"]:
        return "quick smoke settings"
    sizes = sorted(settings["calib_sizes"])
    return "default settings" if sizes == [100, 1000] else f"calibration sets of {', '.join(map(str, sizes))} samples only"


def markdown(results: dict[str, Any]) -> str:
    m, v, s = results["machine"], results["versions"], results["settings"]
    parts = [
        "# Benchmark: quantscope against float, onnxruntime.quantization and NNCF",
        "",
        f"Generated by one run of `python -m bench.run` ({_scope(s)}) "
        f"from code {results.get('code', 'unknown')}, started {results['date']}, {results['duration_s']} s in all.",
        "",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['platform']}",
        f"- **CPU flags**: {' '.join(m['flags'])} (VNNI: {'yes' if m['vnni'] else 'no'}; without it the peers' docs "
        "advise reduce_range)",
        "- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "- **Settings**: calibration sets " + ", ".join(
            f"{sec['name']} {sec.get('calib_sizes', s['calib_sizes'])}" for sec in results["models"])
        + f"; calibrators {s['calibrations']}; peers {s.get('peers', [])}; latency = median of up to "
        f"{s['latency_rounds']} round-robin rounds after warm-up; quantization jobs killed above "
        f"{s['mem_limit_gb']} GB RSS (90 % of the machine) or {s['timeout_s']:.0f} s.",
        "",
        "How to read: every quantization ran in a fresh process; *quantize s* is the wall time of the call (model "
        "load, calibration, writing the file; interpreter start-up and imports excluded; for quantscope's static-int8 "
        "without its speed search, the time spent timing int8 against float, which the peers do not do: the full "
        "time is in the runs table); *peak RSS* is that "
        "process's high-water mark (`VmHWM`, imports included in every tool alike). *loss* is float quality minus "
        "quantized quality (points of accuracy, or 1 - cosine / 1 - IoU for fidelity tasks). Ratios are quantscope "
        "/ other: below 1 is better for quantscope in every column; latency ratios carry their 95 % interval over "
        "paired rounds. Each peer runs twice: as its docs advise for this CPU and model class, and with its defaults "
        "(the settings are stated per row). " + VERDICT_NOTE,
        "",
    ]
    if results.get("skipped"):
        parts += ["## Skipped", ""] + [f"- **{k}**: {why}" for k, why in results["skipped"].items()] + [""]
    summary = []
    for sec in results["models"]:
        n = F.n_max(sec)
        for row in F.against_float(sec):
            r = row["run"]
            for fig, verdict in row["verdicts"].items():
                if verdict != "n/a":
                    summary.append([sec["name"], "float", f"{r['variant']} {fig}", verdict])
        for peer, config in F.peer_configs(sec):
            for fig, value, target, verdict in F.targets(sec, peer, config, n):
                summary.append([sec["name"], _peer_title(peer, config), f"{fig}: {value} ({target})", verdict])
    if summary:
        parts += ["## Targets (at each model's largest calibration set)", "",
                  _md_table(["model", "against", "figure", "verdict"], summary), ""]
    for sec in results["models"]:
        parts += [f"## {sec['name']}", "", f"{sec['description']}. Quality: {sec['task']}. {sec['notes']}.", ""]
        head, rows = float_table(sec)
        parts += ["### quantscope against float", "", _md_table(head, rows), ""]
        for peer, config in F.peer_configs(sec):
            head, rows = peer_table(sec, peer, config)
            parts += [f"### quantscope / {_peer_title(peer, config)}", "", _md_table(head, rows), ""]
        head, rows = runs_table(sec)
        parts += ["### Absolute values", "", _md_table(head, rows), ""]
    return "\n".join(parts) + "\n"


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    for sec in results["models"]:
        tables = [(f"{sec['name']}: quantscope against float", float_table(sec))]
        tables += [(f"{sec['name']}: quantscope / {_peer_title(p, c)}", peer_table(sec, p, c))
                   for p, c in F.peer_configs(sec)]
        for title, (head, rows) in tables:
            table = Table(title=title)
            for h in head:
                table.add_column(h)
            for r in rows:
                table.add_row(*r)
            console.print(table)
    for name, why in results.get("skipped", {}).items():
        console.print(f"[yellow]skipped {name}[/]: {why}")
