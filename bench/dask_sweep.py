"""Sweep-like fan-out wall time on 1, 2 and 4 local Dask workers, and the driver's peak RSS.

Every sweep configuration (:func:`quantscope.analysis.sweep.sweep_configs`) of the bundled
digits CNN is one job: quantize on the worker (model and data go by path), then score the
variant's accuracy on the evaluation set there; only small results come back. Each setting
runs in a fresh driver process, so the peak RSS printed is that driver's alone (the workers
are other processes). Not a test; run it by hand::

    python bench/dask_sweep.py            # inline, then 1, 2, 4 workers
    python bench/dask_sweep.py --workers 2 4

The numbers depend on the machine and on what else runs on it; write them down in
bench/RESULTS.md with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "quantscope" / "examples"


def quantize_and_score(model_in: Any, config: Any, calib_in: Any, eval_in: Any) -> dict[str, Any]:
    """One sweep job, on the worker: quantize, then top-1 accuracy of the variant."""
    from quantscope.execution.jobs import quantize_job
    from quantscope.runtime import make_session

    quantized = quantize_job(model_in, config, calib_in)
    with eval_in.local_path() as path, np.load(path) as z:
        images, labels = z["image"], z["labels"]
    session = make_session(quantized.model, optimization="basic")
    name = session.get_inputs()[0].name
    logits = np.concatenate([session.run(None, {name: images[i : i + 50]})[0] for i in range(0, len(images), 50)])
    return {"accuracy": float((logits.argmax(axis=1) == labels).mean()), "bytes": len(quantized.model.serialize())}


def one_run(workers: int) -> dict[str, Any]:
    """The whole fan-out with ``workers`` Dask workers (0: inline in this process)."""
    from quantscope.analysis.sweep import sweep_configs
    from quantscope.execution import Job, dask_executor, fan_out, local_executor, place

    start = time.perf_counter()
    executor = local_executor(1) if workers == 0 else dask_executor(workers=workers)
    ready = time.perf_counter()
    with executor:
        inputs = [place(executor, EXAMPLES / f) for f in ("digits_cnn.onnx", "digits_calib.npz", "digits_eval.npz")]
        configs = sweep_configs(seed=0)
        jobs = [Job(name, (inputs[0], config, inputs[1], inputs[2])) for name, config in configs.items()]
        results = fan_out(executor, quantize_and_score, jobs)
        done = time.perf_counter()
    return {
        "workers": workers,
        "jobs": len(jobs),
        "failed": [r.key for r in results if not r.ok],
        "startup_s": ready - start,
        "fan_out_s": done - ready,
        "job_s": sum(r.seconds or 0.0 for r in results),
        "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_kind": results[0].machine.label() if results and results[0].machine else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2, 4], help="0 = inline")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_run(args.one)))
        return
    rows = []
    for n in args.workers:
        out = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'workers':>8} {'jobs':>5} {'failed':>6} {'startup s':>10} {'fan-out s':>10} {'sum of job s':>13} "
          f"{'driver peak RSS MB':>19}")
    for r in rows:
        label = "inline" if r["workers"] == 0 else str(r["workers"])
        print(f"{label:>8} {r['jobs']:>5} {len(r['failed']):>6} {r['startup_s']:>10.1f} {r['fan_out_s']:>10.1f} {r['job_s']:>13.1f} "
              f"{r['driver_peak_rss_mb']:>19.0f}")
    if rows:
        print(f"worker kind: {rows[-1]['worker_kind']}")


if __name__ == "__main__":
    main()
