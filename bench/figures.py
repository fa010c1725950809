"""The benchmark's figures from the results dict: ratios with intervals, pairs of runs, and targets with verdicts.

Every ratio of latencies comes from round-robin rounds (paired), with a 95 % bootstrap interval;
every quality comparison knows its noise (1.96 standard errors of the difference). Verdicts come
from :mod:`bench.verdict`.
"""

from __future__ import annotations

import math
from typing import Any

from bench import verdict
from quantscope.analysis.stats import ratio_interval

LAT_KEYS = ("b1t1", "b1t2", "b8t1", "b8t2")
TOOL_NAMES = {"quantscope": "quantscope", "ort": "onnxruntime.quantization", "nncf": "NNCF",
              "tflite": "TFLite converter", "float": "float"}

# quantscope against a peer, at the largest calibration set (issue 7's targets)
TARGET_LOSS = 0.5
TARGET_TIME = 0.5
TARGET_RSS = 1 / 3
TARGET_LATENCY = 1.0
TARGET_SIZE = 1.02

# quantscope against float: its own targets, per kind of variant (size and latency: variant / float)
FLOAT_TARGETS: dict[str, dict[str, float]] = {
    "static": {"size": 0.30, "latency": 1.0},
    "dynamic": {"size": 0.30, "latency": 1.0},
    "int4": {"size": 0.25},
    "float16": {"size": 0.55},
}
LOSS_TARGET = {"accuracy": 0.01, "cosine": 0.01, "det-iou": 0.05, "ctc": 0.05}  # quality loss allowed against float


def kind(run: dict[str, Any]) -> str:
    v = run["variant"]
    if v.startswith("static-") or (run["tool"] == "tflite" and v == "int8"):
        return "static"
    return v


def is_static(run: dict[str, Any]) -> bool:
    """A full-integer model calibrated on data: static-* of every tool, TFLite's int8."""
    return kind(run) == "static"


def calibration_seconds(run: dict[str, Any]) -> float | None:
    """The quantize time without quantscope's speed search (the peers time nothing): load, calibration, writing."""
    seconds = run.get("seconds")
    return None if seconds is None else seconds - (run.get("search_s") or 0.0)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or any(map(math.isnan, (a, b))):
        return None
    return a / b


def latency_ratio(ours: dict[str, Any], other: dict[str, Any], key: str) -> tuple[float, float, float] | None:
    """``ours`` time / ``other`` time at setting ``key``, with its 95 % interval over paired rounds."""
    ra, rb = ours.get("latency_rounds", {}).get(key), other.get("latency_rounds", {}).get(key)
    if ra and rb and len(ra) == len(rb) and len(ra) > 1:
        return ratio_interval(ra, rb)
    r = ratio(ours.get("latency_ms", {}).get(key), other.get("latency_ms", {}).get(key))
    return None if r is None else (r, r, r)


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def fmt_interval(t: tuple[float, float, float] | None) -> str:
    if t is None:
        return "n/a"
    point, lo, hi = t
    return f"{point:.2f}x" if lo == hi else f"{point:.2f}x [{lo:.2f}, {hi:.2f}]"


def ok(run: dict[str, Any] | None) -> bool:
    return run is not None and run["status"] == "ok" and run.get("quality") is not None


def rows_by(section: dict[str, Any]) -> dict[tuple[str, str, str, int | None], dict[str, Any]]:
    return {(r["tool"], r.get("config", ""), r["variant"], r["samples"]): r for r in section["runs"]}


def n_max(section: dict[str, Any]) -> int:
    sizes = [r["samples"] for r in section["runs"] if r["samples"]]
    return max(sizes) if sizes else 0


def peer_configs(section: dict[str, Any]) -> list[tuple[str, str]]:
    """(peer, config) pairs that have rows, in a stable order."""
    seen = {(r["tool"], r.get("config", "")) for r in section["runs"] if r["tool"] not in ("quantscope", "float")}
    order = {"ort": 0, "nncf": 1, "tflite": 2}
    return sorted(seen, key=lambda p: (order.get(p[0], 9), p[1] != "docs", p[1]))


def peer_variant(peer: str, variant: str) -> str:
    if variant.startswith("static-"):
        return {"tflite": "int8", "nncf": "static-nncf"}.get(peer, variant)
    return variant


def loss_noise(a: dict[str, Any], b: dict[str, Any]) -> float:
    return verdict.difference_noise(a.get("quality_se"), b.get("quality_se"))


def pairs(section: dict[str, Any], peer: str, config: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(label, ours, peer's) for every variant both produced; for ORT, same calibrator and set only."""
    by = rows_by(section)
    out = []
    for (tool, _, variant, n), ours in by.items():
        if tool != "quantscope":
            continue
        theirs = by.get((peer, config, peer_variant(peer, variant), n))
        if theirs is None and peer == "tflite":
            theirs = by.get((peer, "", peer_variant(peer, variant), n))
        if theirs is not None:
            label = variant if peer_variant(peer, variant) == variant else f"{variant} / {theirs['variant']}"
            out.append((label, ours, theirs))
    return out


def best_vs_best(section: dict[str, Any], peer: str, config: str, n: int) -> tuple[dict, dict, list[str]] | None:
    """Each tool's best static model over the calibrators BOTH ran successfully at ``n`` (None: none shared)."""
    by = rows_by(section)
    shared = []
    for (tool, _, variant, samples), ours in by.items():
        if tool == "quantscope" and samples == n and variant.startswith("static-"):
            theirs = by.get((peer, config, variant, n))
            if ok(ours) and ok(theirs):
                shared.append((ours, theirs))
    if len(shared) < 1:
        return None
    best_ours = max((o for o, _ in shared), key=lambda r: r["quality"])
    best_peer = max((p for _, p in shared), key=lambda r: r["quality"])
    return best_ours, best_peer, [o["variant"].removeprefix("static-") for o, _ in shared]


def against_float(section: dict[str, Any]) -> list[dict[str, Any]]:
    """quantscope's every variant (largest calibration set, and the uncalibrated ones) against float."""
    ref = section["runs"][0]
    n = n_max(section)
    out = []
    for r in section["runs"]:
        if r["tool"] != "quantscope" or r["samples"] not in (None, n):
            continue
        targets = FLOAT_TARGETS.get(kind(r), {})
        row: dict[str, Any] = {"run": r, "size": ratio(r.get("size"), ref.get("size")),
                               "latency": {k: latency_ratio(r, ref, k) for k in LAT_KEYS} if ok(r) else {}}
        se = r.get("quality_se") or 0.0
        loss = r.get("loss")
        loss_target = LOSS_TARGET.get(section["task"], 0.01)
        row["verdicts"] = {
            "loss": verdict.against_threshold(loss, loss_target, None if loss is None else loss - 1.96 * se,
                                              None if loss is None else loss + 1.96 * se) if ok(r) else verdict.NA,
            "size": verdict.against_threshold(row["size"], targets["size"]) if "size" in targets else verdict.NA,
        }
        lat = row["latency"].get("b1t1")
        row["verdicts"]["latency"] = (
            verdict.against_threshold(lat[0], targets["latency"], lat[1], lat[2])
            if "latency" in targets and lat is not None else verdict.NA
        )
        row["targets"] = {**targets, "loss": loss_target}
        out.append(row)
    return out


def targets(section: dict[str, Any], peer: str, config: str, n: int) -> list[list[str]]:
    """quantscope against one peer configuration at calibration size ``n``: figure, value, target, verdict."""
    out: list[list[str]] = []

    def add(what: str, value: str, target: str, result: str) -> None:
        out.append([what, value, target, result])

    best = best_vs_best(section, peer, config, n)
    if best is not None:
        ours, theirs, cals = best
        lo, lp = max(ours["loss"], 0.0), max(theirs["loss"], 0.0)
        add(f"quality loss, best vs best over {'/'.join(cals)} ({ours['variant']} vs {theirs['variant']})",
            f"{lo:.4g} vs {lp:.4g}", f"<= {TARGET_LOSS}x", verdict.against_peer(lo, lp, TARGET_LOSS,
                                                                               loss_noise(ours, theirs)))
    else:
        add("quality loss, best vs best", "no calibrator that both ran", f"<= {TARGET_LOSS}x", verdict.NA)
    for label, ours, theirs in pairs(section, peer, config):
        if not is_static(ours) or ours["samples"] != n:
            continue
        if theirs["status"] != "ok" or not ok(ours):
            add(f"{label}", f"quantscope {ours['status']}, peer {theirs['status']}: {theirs.get('error', '')[:80]}",
                "", verdict.NA)
            continue
        lo, lp = max(ours["loss"], 0.0), max(theirs["loss"], 0.0)
        add(f"quality loss, {label}", f"{lo:.4g} vs {lp:.4g}", f"<= {TARGET_LOSS}x",
            verdict.against_peer(lo, lp, TARGET_LOSS, loss_noise(ours, theirs)))
        for r, what, limit in ((ratio(calibration_seconds(ours), theirs.get("seconds")), "quantize time", TARGET_TIME),
                               (ratio(ours.get("peak_rss_mb"), theirs.get("peak_rss_mb")), "peak RSS", TARGET_RSS)):
            add(f"{what}, {label}", fmt_ratio(r), f"<= {limit:.2f}x", verdict.against_threshold(r, limit))
        lat = latency_ratio(ours, theirs, "b1t1")
        add(f"latency b1t1, {label}", fmt_interval(lat), f"<= {TARGET_LATENCY:.1f}x",
            verdict.NA if lat is None else verdict.against_threshold(lat[0], TARGET_LATENCY, lat[1], lat[2]))
        ref_size = section["runs"][0].get("size")
        r = ratio(ours.get("size"), theirs.get("size"))
        add(f"size, {label} (peer {fmt_ratio(ratio(theirs.get('size'), ref_size))} of float)", fmt_ratio(r),
            f"<= {TARGET_SIZE:.2f}x", verdict.against_peer(ours.get("size"), theirs.get("size"), TARGET_SIZE))
    return out
