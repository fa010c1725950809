"""Min-max calibration, side by side: ``quantscope quantize -m static-int8`` vs ORT's ``quantize_static``.

Each run is a fresh process; its wall time and peak RSS (``wait4``'s ``ru_maxrss``: the largest
process of its tree) are recorded. Both tools read the same calibration ``.npz`` of N samples
in batches of 20 and write a QDQ model calibrated with MinMax. Models: the digits CNN shipped in
quantscope.examples, the PP-OCR direction classifier, all-MiniLM-L6-v2 and the PP-OCRv4 text
recognizer and detector (tests/realmodels.py, cached under ``$QUANTSCOPE_TEST_CACHE``). quantscope runs with its default options except
``--no-measure``: the speed search times int8 against float, which is not calibration and which
the peer does not do (``bench.run`` reports it separately). ORT quantizes every op it can,
per channel (its calibration then observes every activation, as quantscope's does). Usage::

    python bench/calib_speed.py [--samples 100 1000] [--repeat 2] [--out bench/calib_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH = 20

ORT_SCRIPT = """
import sys, numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, quantize_static
model, calib, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
class Reader(CalibrationDataReader):
    def __init__(self):
        with np.load(calib) as z:
            self.arrays = {k: z[k] for k in z.files if k != "labels"}
        self.rewind()
    def get_next(self):
        return next(self.it, None)
    def rewind(self):
        n = len(next(iter(self.arrays.values())))
        self.it = ({k: v[i:i + batch] for k, v in self.arrays.items()} for i in range(0, n, batch))
quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                calibrate_method=CalibrationMethod.MinMax)
"""


def measured(cmd: list[str]) -> dict[str, float]:
    """Run ``cmd``; its wall seconds and the peak RSS (MB) of its largest process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if status != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({status}): {err[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def digits(n: int, work: Path) -> tuple[Path, Path]:
    from quantscope.examples import DIGITS_CALIB, DIGITS_MODEL, example_path

    with np.load(example_path(DIGITS_CALIB)) as z:
        base = z["image"]
    reps = -(-n // len(base))
    noise = np.random.default_rng(0).normal(0, 0.05, size=(reps * len(base), *base.shape[1:])).astype(np.float32)
    images = (np.tile(base, (reps, 1, 1, 1)) + noise)[:n]
    path = work / f"digits-{n}.npz"
    np.savez(path, image=images)
    return Path(example_path(DIGITS_MODEL)), path


def ppocr_cls(n: int, work: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    import realmodels

    path = work / f"ppocr-cls-{n}.npz"
    x, _ = realmodels.ppocr_cls_dataset(n, seed=0)
    np.savez(path, x=x)
    return realmodels.ppocr_cls_model(realmodels.default_cache_dir()), path


def minilm(n: int, work: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    import realmodels
    from bench.models import MINILM_SEQ, _sentences, minilm_texts

    cache = realmodels.default_cache_dir()
    path = work / f"minilm-{n}.npz"
    pool = _sentences()[:-100]  # the bench's held-out sentences stay out
    np.savez(path, **realmodels.minilm_dataset(minilm_texts(n, pool, seed=n), realmodels.minilm_tokenizer(cache),
                                               seq_len=MINILM_SEQ))
    return realmodels.minilm_model(cache), path


def _rapidocr(member: str, name: str, images: np.ndarray, work: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT / "tests"))
    import realmodels

    cache = realmodels.default_cache_dir()
    wheel = realmodels.fetch_wheel(realmodels.RAPIDOCR_SPEC, cache)
    path = work / f"{name}-{len(images)}.npz"
    np.savez(path, x=images)
    return realmodels.extract_member(wheel, member, realmodels._extract_dir(cache, wheel)), path


def ppocr_rec(n: int, work: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT))
    from bench.models import PPOCR_REC_MEMBER, rec_dataset

    return _rapidocr(PPOCR_REC_MEMBER, "ppocr-rec", rec_dataset(n, seed=3000 + n), work)


def ppocr_det(n: int, work: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT))
    from bench.models import PPOCR_DET_MEMBER, det_dataset

    return _rapidocr(PPOCR_DET_MEMBER, "ppocr-det", det_dataset(n, seed=2000 + n), work)


MODELS = {"digits-cnn": digits, "ppocr-cls": ppocr_cls, "minilm": minilm, "ppocr-rec": ppocr_rec, "ppocr-det": ppocr_det}


def byte_compiled() -> None:
    """Compile quantscope's modules to bytecode first, as installing a package does (its peer's
    modules come so from site-packages). Under ``PYTHONDONTWRITEBYTECODE`` (set on this machine) a
    source checkout would otherwise compile its ~160 modules again in every run: 0.2-0.3 s of
    each process, which is not calibration."""
    import compileall

    import quantscope

    compileall.compile_dir(str(Path(quantscope.__file__).parent), quiet=1)


def bench(models: list[str], samples: list[int], repeat: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    python = sys.executable
    byte_compiled()
    with tempfile.TemporaryDirectory(prefix="calib-speed-") as tmp:
        work = Path(tmp)
        for model_name in models:
            for n in samples:
                model, calib = MODELS[model_name](n, work)
                tools = {
                    "quantscope": [python, "-m", "quantscope.cli", "quantize", str(model), "-m", "static-int8",
                                   "--calib", str(calib), "--num-samples", str(n), "--batch-size", str(BATCH),
                                   "--calibration", "minmax", "--no-measure", "-o", str(work / "qs.onnx")],
                    "ort": [python, "-c", ORT_SCRIPT, str(model), str(calib), str(work / "ort.onnx"), str(BATCH)],
                }
                for _ in range(repeat):  # alternate the tools so machine load hits both alike
                    for tool, cmd in tools.items():
                        for f in work.glob("qs*"):
                            f.unlink()
                        row = {"model": model_name, "samples": n, "tool": tool, **measured(cmd)}
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    return rows


CALIBRATION_ONLY = """
import sys, time, tempfile, numpy as np
model, calib, tool, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with np.load(calib) as z:
    arrays = {k: z[k] for k in z.files if k != "labels"}
n = len(next(iter(arrays.values())))
if tool == "quantscope":
    import quantscope
    from quantscope.calibrate import collect
    from quantscope.config.calibration import Calibration, StatisticsRequest
    m = quantscope.load(model)
    data = quantscope.Dataset.from_arrays(arrays).bind(m.inputs)
    names = tuple(o.name for node in m.ir.graph for o in node.outputs if o.name)
    t0 = time.perf_counter()
    collect(m, data, StatisticsRequest(names, Calibration(num_samples=None, batch_size=batch)))
else:
    from onnxruntime.quantization.calibrate import CalibrationDataReader, create_calibrator
    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = ({k: v[i:i + batch] for k, v in arrays.items()} for i in range(0, n, batch))
        def get_next(self):
            return next(self.it, None)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cal = create_calibrator(model, augmented_model_path=tmp + "/aug.onnx")
        cal.collect_data(Reader())
        cal.compute_data()
print(time.perf_counter() - t0)
"""


def calibration_only(models: list[str], samples: list[int]) -> str:
    """In-process seconds of the calibration pass alone (every activation, min-max), each tool in a fresh process."""
    lines = ["| model | samples | quantscope collect() s | ORT MinMaxCalibrater s |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="calib-only-") as tmp:
        for model_name in models:
            for n in samples:
                model, calib = MODELS[model_name](n, Path(tmp))
                secs = {}
                for tool in ("quantscope", "ort"):
                    out = subprocess.run([sys.executable, "-c", CALIBRATION_ONLY, str(model), str(calib), tool,
                                          str(BATCH)], capture_output=True, text=True, check=True)
                    secs[tool] = float(out.stdout.strip().splitlines()[-1])
                lines.append(f"| {model_name} | {n} | {secs['quantscope']:.2f} | {secs['ort']:.2f} |")
    return "\n".join(lines)


def summary(rows: list[dict[str, object]]) -> str:
    """Best-of-repeats per (model, samples, tool), as a Markdown table."""
    best: dict[tuple[object, object, object], dict[str, float]] = {}
    for r in rows:
        key = (r["model"], r["samples"], r["tool"])
        cur = best.setdefault(key, {"wall_s": float("inf"), "peak_rss_mb": float("inf")})
        cur["wall_s"] = min(cur["wall_s"], float(r["wall_s"]))  # type: ignore[arg-type]
        cur["peak_rss_mb"] = min(cur["peak_rss_mb"], float(r["peak_rss_mb"]))  # type: ignore[arg-type]
    lines = ["| model | samples | quantscope wall s | ORT wall s | quantscope peak MB | ORT peak MB |",
             "|---|---|---|---|---|---|"]
    for model, n in dict.fromkeys((k[0], k[1]) for k in best):
        q, o = best[(model, n, "quantscope")], best[(model, n, "ort")]
        lines.append(f"| {model} | {n} | {q['wall_s']:.2f} | {o['wall_s']:.2f} | {q['peak_rss_mb']:.0f} | {o['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--samples", nargs="+", type=int, default=[100, 1000])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--calibration-only", action="store_true", help="time only the calibration pass, in-process")
    args = ap.parse_args()
    if args.calibration_only:
        print(calibration_only(args.models, args.samples))
        return
    rows = bench(args.models, args.samples, args.repeat)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(summary(rows))


if __name__ == "__main__":
    main()
