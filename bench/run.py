"""Benchmark quantscope against its peers on real models: ``python -m bench.run`` (``make bench``).

For every model: the float reference, then each quantization job in a fresh process (every
tool, same data, same batch), then quality, size and latency of every model written (latency
round-robin, so every ratio has an interval), and finally ``bench/RESULTS.md``: quantscope
against float, quantscope against each peer configured as its docs advise and with its
defaults (:mod:`bench.peers`), and the targets with their verdicts (:mod:`bench.verdict`).
One run writes the whole file from one code version (the commit is recorded).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import measure, peers, report
from bench.models import BUILDERS, REPO_ROOT, BenchModel

logger = logging.getLogger("bench")

CALIBRATIONS = ("minmax", "percentile", "entropy")
UNCALIBRATED = {"quantscope": ("dynamic", "int4", "float16"), "ort": ("dynamic", "int4"), "nncf": ("int4",),
                "tflite": ("dynamic", "float16")}
PEERS = ("ort", "nncf")
LATENCY_SETTINGS = ((1, 1), (1, 2), (8, 1), (8, 2))  # (batch, threads)
ALL_MODELS = ("digits", "ppocr-cls", "minilm", "ppocr-det", "ppocr-rec", "keras")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--models", nargs="+", default=list(ALL_MODELS), choices=ALL_MODELS)
    p.add_argument("--calib-sizes", nargs="+", type=int, default=[100, 1000])
    p.add_argument("--calibrations", nargs="+", default=list(CALIBRATIONS), choices=CALIBRATIONS)
    p.add_argument("--quick", action="store_true", help="tiny settings: digits only, 32 samples, short timing")
    p.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".cache" / "bench")
    p.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "RESULTS.md")
    p.add_argument("--mem-limit-gb", type=float, default=None,
                   help="kill a quantization job above this RSS (default: 90 %% of the machine's memory)")
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS, help="peers of ONNX models")
    p.add_argument("--timeout", type=float, default=900.0, help="kill a quantization job after this many seconds")
    p.add_argument("--latency-rounds", type=int, default=40)
    p.add_argument("--latency-budget", type=float, default=25.0, help="seconds per latency setting")
    args = p.parse_args(argv)
    if args.quick:
        if args.models == list(ALL_MODELS):
            args.models = ["digits"]
        args.calib_sizes = [32]
        args.latency_rounds = 6
        args.latency_budget = 2.0
    if any(n < 1 for n in args.calib_sizes):
        p.error("--calib-sizes must be positive")
    if args.mem_limit_gb is None:  # no lower than the machine allows
        args.mem_limit_gb = round(0.9 * machine()["memory_gb"], 1)
    return args


def machine() -> dict[str, Any]:
    from quantscope.runtime import cpu_flags

    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    flags = sorted(f for f in cpu_flags() if f.startswith(("avx", "fma", "f16c", "amx", "sse4")) or "vnni" in f)
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": name or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "flags": flags,
        "vnni": any("vnni" in f for f in flags),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("quantscope", "onnxruntime", "nncf", "onnx", "onnx-ir", "numpy", "sympy", "torch", "tensorflow",
                "ai-edge-litert"):
        for dist in (pkg, f"{pkg}-cpu"):
            try:
                out[pkg] = version(dist)
                break
            except PackageNotFoundError:
                out[pkg] = "not installed"
    return out


def code_version() -> str:
    """The commit the benchmark ran from, and whether the tree had changes (other than the results this run writes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "bench", ":!bench/RESULTS.*"],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes" if dirty else "")


def _job(tool: str, variant: str, model: Path, out: Path, calib: Path | None, samples: int | None,
         config: str = "") -> dict[str, Any]:
    return {"tool": tool, "variant": variant, "model": str(model), "out": str(out),
            "calib": str(calib) if calib else None, "samples": samples, "config": config}


def peer_jobs(bm: BenchModel, args: argparse.Namespace, folder: Path, vnni: bool,
              peer_input: Path) -> list[dict[str, Any]]:
    """Every peer job on one ONNX model: each peer as its docs advise, and with its defaults."""
    jobs: list[dict[str, Any]] = []
    for peer in args.peers:
        for config in peers.CONFIGS:
            for n in args.calib_sizes:
                variants = [f"static-{cal}" for cal in args.calibrations] if peer == "ort" else ["static-nncf"]
                for v in variants:
                    src = peer_input if peer == "ort" and config == "docs" else bm.path
                    jobs.append(_job(peer, v, src, folder / f"{peer}-{config}-{v}-{n}.onnx", bm.calib_dirs[n], n,
                                     config))
            for v in UNCALIBRATED[peer]:
                if v == "int4" and config == "defaults":
                    continue  # one int4 row: the peer's weight-only API has no separate docs advice
                src = peer_input if peer == "ort" and config == "docs" else bm.path
                jobs.append(_job(peer, v, src, folder / f"{peer}-{config}-{v}.onnx", None, None, config))
    for spec in jobs:
        spec.update(vnni=vnni, transformer=bm.transformer,
                    settings=peers.describe(spec["tool"], spec["config"], spec["variant"], vnni=vnni,
                                            transformer=bm.transformer))
    return jobs


def bench_model(bm: BenchModel, args: argparse.Namespace) -> dict[str, Any]:
    """All runs on one model; returns its section of the results."""
    folder = args.work_dir / bm.name / "out"
    folder.mkdir(parents=True, exist_ok=True)
    limits = {"mem_limit_mb": args.mem_limit_gb * 1024, "timeout_s": args.timeout}
    arrays, labels = bm.eval_arrays()
    reference = measure.outputs(bm.path, arrays)
    runs: list[dict[str, Any]] = [{
        "tool": "float", "config": "", "variant": "float32", "samples": None, "status": "ok", "path": str(bm.path),
        "quality": measure.float_quality(bm, reference, labels), "size": measure.size_bytes(bm.path),
        "quality_se": measure.quality_se(bm.task, reference, reference, labels),
    }]

    peer = "tflite" if bm.keras_path else "ort"
    vnni = bool(machine()["vnni"])
    peer_input = bm.path
    if peer == "ort" and "ort" in args.peers:
        logger.info("%s: peer pre-processing (quant_pre_process)", bm.name)
        pre_out = folder / "ort-preprocessed.onnx"
        pre = measure.run_job(_job("ort", "preprocess", bm.path, pre_out, None, None, "docs"), **limits)
        runs.append({"tool": "ort", "config": "docs", "variant": "preprocess", "samples": None, "path": None,
                     **asdict(pre)})
        peer_input = pre_out if pre.status == "ok" else bm.path

    jobs: list[dict[str, Any]] = []
    for n in args.calib_sizes:
        for cal in ("auto", *args.calibrations):  # auto: quantscope's default (no peer has it)
            jobs.append(_job("quantscope", f"static-{cal}", bm.path, folder / f"quantscope-static-{cal}-{n}.onnx",
                             bm.calib_dirs[n], n))
        if bm.transformer:  # weight-int4 with GPTQ + AWQ (MatMul weights: transformers)
            jobs.append(_job("quantscope", "int4-gptq-awq", bm.path, folder / f"quantscope-int4-gptq-awq-{n}.onnx",
                             bm.calib_dirs[n], n))
        if peer == "tflite":
            jobs.append({**_job("tflite", "int8", bm.path, folder / f"tflite-{n}.int8.tflite", bm.calib_dirs[n], n),
                         "keras": str(bm.keras_path)})
    for v in UNCALIBRATED["quantscope"]:
        jobs.append(_job("quantscope", v, bm.path, folder / f"quantscope-{v}.onnx", None, None))
    if peer == "tflite":
        for v in UNCALIBRATED["tflite"]:
            jobs.append({**_job("tflite", v, bm.path, folder / f"tflite-{v}.{v}.tflite", None, None),
                         "keras": str(bm.keras_path)})
    else:
        jobs += peer_jobs(bm, args, folder, vnni, peer_input)

    for spec in jobs:
        t0 = time.perf_counter()
        res = measure.run_job(spec, **limits)
        row = {"tool": spec["tool"], "config": spec.get("config", ""), "variant": spec["variant"],
               "samples": spec["samples"], "settings": spec.get("settings", ""), "path": spec["out"], **asdict(res)}
        if res.status == "ok":
            try:
                out = measure.outputs(Path(spec["out"]), arrays, tflite=spec["tool"] == "tflite")
                row["quality"] = measure.quality(bm.task, out, reference, labels)
                row["quality_se"] = measure.quality_se(bm.task, out, reference, labels)
                row["size"] = measure.size_bytes(Path(spec["out"]))
            except Exception as exc:  # a model that was written but does not run
                row.update(status="failed", error=f"evaluation: {type(exc).__name__}: {exc}")
        logger.info("%s %s %s n=%s: %s (%.0f s)%s", bm.name, spec["tool"], spec["variant"], spec["samples"],
                    row["status"], time.perf_counter() - t0, f" {row['error'][:200]}" if row.get("error") else "")
        runs.append(row)

    base = runs[0]["quality"]
    for row in runs:
        if row.get("quality") is not None:
            row["loss"] = base - row["quality"]
    runs_latency(bm, runs, args)
    return {"name": bm.name, "peer": peer, "description": bm.description, "task": bm.task, "notes": bm.notes,
            "transformer": bm.transformer, "model_path": str(bm.path), "calib_sizes": sorted(set(args.calib_sizes)),
            "eval_samples": len(next(iter(arrays.values()))), "runs": runs}


def runs_latency(bm: BenchModel, runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Latency of the float model and of every model written at the largest calibration set (and
    the uncalibrated ones), round-robin so every ratio is paired."""
    n = max(args.calib_sizes)
    chosen = [runs[0]] + [r for r in runs[1:] if r["status"] == "ok" and r["variant"] != "preprocess"
                          and r["samples"] in (None, n)]
    paths = {str(i): Path(r["path"]) for i, r in enumerate(chosen)}
    for batch, threads in LATENCY_SETTINGS:
        logger.info("%s: latency batch %d, %d thread(s), %d models", bm.name, batch, threads, len(paths))
        feeds = bm.latency_feeds(batch)
        try:
            ms = measure.latencies(paths, feeds, threads=threads, rounds=args.latency_rounds, budget_s=args.latency_budget)
        except Exception as exc:
            logger.warning("%s: latency failed: %s", bm.name, exc)
            continue
        for key, times in ms.items():
            chosen[int(key)].setdefault("latency_ms", {})[f"b{batch}t{threads}"] = float(np.median(times))
            chosen[int(key)].setdefault("latency_rounds", {})[f"b{batch}t{threads}"] = [round(t, 4) for t in times]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    sections: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name in args.models:
        if name == "keras":
            skipped[name] = keras_skip_reason()
            if skipped[name]:
                continue
        logger.info("%s: preparing model and data", name)
        try:
            bm = BUILDERS[name](args.work_dir, sorted(set(args.calib_sizes)))
        except Exception as exc:
            skipped[name] = f"could not prepare: {type(exc).__name__}: {exc}"
            logger.warning("%s skipped: %s", name, skipped[name])
            continue
        sections.append(bench_model(bm, args))
        write_results(args, started, sections, skipped)  # after every model: a crash keeps what was done
    write_results(args, started, sections, skipped)
    report.print_tables(json.loads(args.results.with_suffix(".json").read_text()))
    print(f"\nwrote {args.results} and {args.results.with_suffix('.json')}")
    return 0


def write_results(
    args: argparse.Namespace, started: datetime, sections: list[dict[str, Any]], skipped: dict[str, str]
) -> None:
    results = {
        "date": started.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - started).total_seconds()),
        "machine": machine(),
        "versions": versions(),
        "code": code_version(),
        "settings": {"calib_sizes": args.calib_sizes, "calibrations": args.calibrations, "peers": args.peers,
                     "latency_rounds": args.latency_rounds, "mem_limit_gb": args.mem_limit_gb,
                     "timeout_s": args.timeout, "quick": args.quick},
        "models": sections,
        "skipped": {k: v for k, v in skipped.items() if v},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix(".json").write_text(json.dumps(results, indent=1))
    args.results.write_text(report.markdown(results))


def keras_skip_reason() -> str:
    """Why the Keras/TFLite row cannot run here ('' when it can)."""
    if importlib.util.find_spec("tensorflow") is None:
        return "tensorflow is not importable (the [tensorflow] extra is not installed)"
    try:
        found = importlib.util.find_spec("quantscope.backends.tflite") is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        return "quantscope.backends.tflite (Keras import, TFLite path) does not exist yet"
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
