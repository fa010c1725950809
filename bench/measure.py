"""Measurements: quantization jobs in fresh processes, latency, quality and size of the results.

* :func:`run_job` starts ``python -m bench.worker`` and watches it with psutil: a job that
  exceeds the memory limit or the time limit is killed and recorded as such (the peer's
  histogram calibrators keep every intermediate tensor of every sample, which can exhaust
  the machine).
* :func:`latencies` times every model of a group round-robin (one run of each in turn), so
  that load from other processes on a shared machine hits all of them alike; the median
  is reported. All sessions use the same :func:`quantscope.runtime.session_options`.
* :func:`quality` compares outputs with labels (accuracy) or with the float model (cosine
  similarity of embeddings, IoU of binarised detection maps).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.models import DET_THRESH, REPO_ROOT, BenchModel


@dataclass
class JobResult:
    status: str  # ok | not available | failed | out of memory | timeout
    seconds: float | None = None
    search_s: float | None = None  # of ``seconds``: quantscope's speed search (timing int8 against float)
    peak_rss_mb: float | None = None
    rss_before_mb: float | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_job(spec: dict[str, Any], *, mem_limit_mb: float, timeout_s: float) -> JobResult:
    """Run one quantization job in a fresh interpreter; kill it past the memory or time limit."""
    import psutil

    with tempfile.TemporaryDirectory(prefix="qs-bench-") as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        log = (Path(tmp) / "stderr.txt").open("w+")  # a file, not a pipe: a chatty tool must not block on a full pipe
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", str(spec_path), str(result_path)],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True,
        )
        watched = psutil.Process(proc.pid)
        started = time.perf_counter()
        peak = 0.0
        killed = ""
        while proc.poll() is None:
            try:
                rss = watched.memory_info().rss / 2**20
                for child in watched.children(recursive=True):
                    rss += child.memory_info().rss / 2**20
            except psutil.Error:
                rss = 0.0
            peak = max(peak, rss)
            if rss > mem_limit_mb:
                killed = "out of memory"
            elif time.perf_counter() - started > timeout_s:
                killed = "timeout"
            if killed:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.05)
        log.seek(0)
        stderr = log.read()
        log.close()
        if killed:
            limit = f"> {mem_limit_mb / 1024:.1f} GB RSS" if killed == "out of memory" else f"> {timeout_s:.0f} s"
            return JobResult(status=killed, peak_rss_mb=peak, error=f"killed: {limit}")
        if not result_path.is_file():
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            return JobResult(status="failed", error=f"worker exited with {proc.returncode}: {tail}")
        raw = json.loads(result_path.read_text())
    return JobResult(
        status=raw["status"],
        seconds=raw.get("seconds"),
        search_s=raw.get("search_s"),
        peak_rss_mb=raw.get("peak_rss_mb"),
        rss_before_mb=raw.get("rss_before_mb"),
        error=raw.get("error", ""),
    )


# --------------------------------------------------------------------------- latency


def latencies(
    paths: dict[str, Path], feeds: dict[str, np.ndarray], *, threads: int, rounds: int, budget_s: float
) -> dict[str, list[float]]:
    """Milliseconds per ``session.run`` for each model and round, timed round-robin.

    Round ``r`` of every ONNX model is timed in the same pass, so the lists are paired: a ratio
    of two models and its interval come from them (:func:`quantscope.analysis.stats.ratio_interval`).
    The order of the models is reversed every other round. Stops after ``rounds`` rounds or once
    ``budget_s`` seconds are spent (at least 5 rounds). A .tflite model gets one value, its
    interpreter's median.
    """
    from quantscope.runtime import make_session

    out: dict[str, list[float]] = {}
    for key, path in list(paths.items()):
        if path.suffix == ".tflite":  # the LiteRT interpreter's own timing loop
            from quantscope.backends.tflite import load

            out[key] = [load(path).measure_latency(feeds, threads=threads, runs=rounds).median_ms]
    paths = {k: p for k, p in paths.items() if k not in out}
    sessions = {}
    for key, path in paths.items():
        sess = make_session(path, threads=threads)
        want = {i.name for i in sess.get_inputs()}
        sessions[key] = (sess, {k: v for k, v in feeds.items() if k in want})
    for sess, f in sessions.values():  # warm-up
        for _ in range(3):
            sess.run(None, f)
    times: dict[str, list[float]] = {k: [] for k in sessions}
    t_start = time.perf_counter()
    order = list(sessions.items())
    for r in range(rounds):
        for key, (sess, f) in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            sess.run(None, f)
            times[key].append((time.perf_counter() - t0) * 1e3)
        if r >= 4 and time.perf_counter() - t_start > budget_s:
            break
    return {**out, **times}


# --------------------------------------------------------------------------- quality


def outputs(path: Path, arrays: dict[str, np.ndarray], *, batch: int = 16, tflite: bool = False) -> np.ndarray:
    """The first output of ``path`` over ``arrays`` (2 threads, all optimizations)."""
    from quantscope.runtime import make_session

    if tflite:
        from quantscope.backends.tflite import load
        from quantscope.data import Dataset

        return load(path).predict(Dataset.from_arrays(arrays), batch_size=batch, threads=2)[0]

    sess = make_session(path, threads=2)
    want = [i.name for i in sess.get_inputs()]
    n = len(next(iter(arrays.values())))
    chunks = [sess.run(None, {k: arrays[k][i : i + batch] for k in want})[0] for i in range(0, n, batch)]
    return np.concatenate(chunks)


def per_sample(task: str, out: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """Per-sample scores: 1/0 correct against labels, cosine similarity, IoU of binarised maps, or
    1/0 the same decoded text as the float model (CTC)."""
    if task == "accuracy":
        if labels is None:
            raise ValueError("an accuracy task needs labels")
        return (out.argmax(axis=1) == labels).astype(np.float64)
    if task == "cosine":
        a = out.reshape(len(out), -1).astype(np.float64)
        b = reference.reshape(len(reference), -1).astype(np.float64)
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    if task == "det-iou":
        a = out.reshape(len(out), -1) > DET_THRESH
        b = reference.reshape(len(reference), -1) > DET_THRESH
        inter = (a & b).sum(1)
        union = (a | b).sum(1)
        return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    if task == "ctc":
        return np.array([a == b for a, b in zip(ctc_greedy(out), ctc_greedy(reference), strict=True)], dtype=np.float64)
    raise ValueError(f"unknown task {task!r}")


def ctc_greedy(probs: np.ndarray, blank: int = 0) -> list[tuple[int, ...]]:
    """Greedy CTC decoding of ``probs`` [N, T, classes]: best class per step, repeats merged, blanks dropped."""
    best = probs.argmax(axis=-1)
    keep = np.ones_like(best, dtype=bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    return [tuple(int(c) for c in row[k & (row != blank)]) for row, k in zip(best, keep, strict=True)]


def quality(task: str, out: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> float:
    """Accuracy against labels, mean cosine similarity, or mean IoU of binarised maps."""
    return float(per_sample(task, out, reference, labels).mean())


def quality_se(task: str, out: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> float:
    """Standard error of :func:`quality` over the evaluation samples.

    For accuracy the Agresti-Coull form (two successes and two failures added), so a perfect
    score on n samples still carries the uncertainty of n samples.
    """
    scores = per_sample(task, out, reference, labels)
    n = len(scores)
    if task == "accuracy":
        p = (scores.sum() + 2) / (n + 4)
        return float(np.sqrt(p * (1 - p) / (n + 4)))
    return float(scores.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def float_quality(model: BenchModel, reference: np.ndarray, labels: np.ndarray | None) -> float:
    """The float model's own score (1.0 for fidelity tasks, by definition)."""
    return quality(model.task, reference, reference, labels)


def size_bytes(path: Path) -> int:
    """Model file size, plus any external-data files written beside it."""
    total = path.stat().st_size
    for extra in path.parent.glob(path.name + ".data"):
        total += extra.stat().st_size
    return total
