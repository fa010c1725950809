"""Train, export and verify the bundled digits CNN example.

Run once from the repository root; the outputs are committed::

    .venv/bin/python examples/digits/train.py

Writes into ``src/quantscope/examples/``:

* ``digits_cnn.onnx``   float model, opset 17, input ``image`` [batch, 1, 32, 32],
  output ``logits`` [batch, 10], weights embedded (no external data file)
* ``digits_calib.npz``  256 calibration images (+ labels), taken from the training split
* ``digits_eval.npz``   400 held-out evaluation images (+ labels), never seen in training
* ``digits.json``       provenance and measured metadata

Data is scikit-learn's bundled ``load_digits`` (no download). Requires the ``torch``
extra (torch, onnxscript) plus scikit-learn, onnx and onnxruntime.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.version_converter
import onnxruntime as ort
import sklearn
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = REPO_ROOT / "src" / "quantscope" / "examples"

MODEL_FILE = "digits_cnn.onnx"
CALIB_FILE = "digits_calib.npz"
EVAL_FILE = "digits_eval.npz"
META_FILE = "digits.json"

SEED = 0
IMAGE_SIZE = 32
N_EVAL = 400
N_CALIB = 256
N_CLASSES = 10
OPSET = 17
EXPORT_OPSET = 18  # lowest opset the dynamo exporter implements natively

EPOCHS = 12
BATCH_SIZE = 64
LR = 3e-3
WEIGHT_DECAY = 1e-4
FINAL_MAP = IMAGE_SIZE // 8  # spatial size after the stride-2 conv and two maxpools
MAX_SHIFT = 2  # pixels (at 32x32) for the random-shift augmentation

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
ATOL = 1e-4


# --------------------------------------------------------------------------- data


def load_images() -> tuple[np.ndarray, np.ndarray]:
    """Return (images float32 [N,1,32,32] in [0,1], labels int64 [N])."""
    digits = load_digits()
    raw = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N,1,8,8]
    up = F.interpolate(raw, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    images = up.clamp_(0.0, 1.0).numpy().astype(np.float32)
    labels = digits.target.astype(np.int64)
    return np.ascontiguousarray(images), labels


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded split: (train, calib ⊂ train, eval disjoint from train)."""
    all_idx = np.arange(labels.shape[0])
    train_idx, eval_idx = train_test_split(
        all_idx, test_size=N_EVAL, stratify=labels, random_state=SEED
    )
    _, calib_idx = train_test_split(
        train_idx, test_size=N_CALIB, stratify=labels[train_idx], random_state=SEED
    )
    train_idx, calib_idx, eval_idx = np.sort(train_idx), np.sort(calib_idx), np.sort(eval_idx)
    assert np.intersect1d(eval_idx, train_idx).size == 0
    assert np.intersect1d(eval_idx, calib_idx).size == 0
    assert np.isin(calib_idx, train_idx).all()
    return train_idx, calib_idx, eval_idx


def random_shift(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift every image by an independent integer offset in [-MAX_SHIFT, MAX_SHIFT]."""
    n, _, h, w = batch.shape
    padded = F.pad(batch, (MAX_SHIFT, MAX_SHIFT, MAX_SHIFT, MAX_SHIFT))
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (n, 2), generator=generator)
    out = torch.empty_like(batch)
    for i in range(n):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


# -------------------------------------------------------------------------- model


def conv_bn(c_in: int, c_out: int, *, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
    ]


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + identity, then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv_bn(channels, channels)
        self.conv2, self.bn2 = conv_bn(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + x)


class DigitsCNN(nn.Module):
    """Small ResNet-style CNN for 1x32x32 digits (about 34 MFLOPs per sample)."""

    def __init__(self, num_classes: int = N_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn(1, 32),
            nn.ReLU(),  # 32x32
            *conv_bn(32, 32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16x16
            *conv_bn(32, 64, stride=2),
            nn.ReLU(),  # strided projection -> 8x8
            ResidualBlock(64),
            nn.MaxPool2d(2),  # 4x4
            *conv_bn(64, 128),
            nn.ReLU(),
            # Global average pool over the final 4x4 map. AvgPool2d (-> ONNX AveragePool) rather
            # than AdaptiveAvgPool2d/mean: the latter exports as opset-18 ReduceMean, which
            # onnx's 18->17 converter leaves with an invalid `noop_with_empty_axes` attribute.
            nn.AvgPool2d(FINAL_MAP),
        )
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.features(image)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def count_flops(model: nn.Module) -> tuple[int, list[tuple[str, str, int]]]:
    """MACs per sample of every Conv2d/Linear from their (output) shapes; FLOPs = 2 * MACs.

    BN, ReLU, pooling and the residual add are elementwise (< 1 % of the total) and not counted.
    """
    rows: list[tuple[str, str, int]] = []
    hooks = []

    def make_hook(name: str) -> Any:
        def hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            if isinstance(mod, nn.Conv2d):
                kh, kw = mod.kernel_size
                per_out = (mod.in_channels // mod.groups) * kh * kw
                macs = per_out * out[0].numel()
                desc = f"Conv {mod.in_channels}->{mod.out_channels} k{kh} s{mod.stride[0]} -> {tuple(out.shape[1:])}"
            else:
                assert isinstance(mod, nn.Linear)
                macs = mod.in_features * mod.out_features
                desc = f"Linear {mod.in_features}->{mod.out_features}"
            rows.append((name, desc, macs))

        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            hooks.append(mod.register_forward_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return 2 * sum(r[2] for r in rows), rows


# ----------------------------------------------------------------------- training


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps_per_epoch = (x.shape[0] + BATCH_SIZE - 1) // BATCH_SIZE
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, epochs=EPOCHS, steps_per_epoch=steps_per_epoch
    )
    model.train()
    for epoch in range(EPOCHS):
        t0 = time.perf_counter()
        perm = torch.randperm(x.shape[0], generator=gen)
        total_loss, correct = 0.0, 0
        for start in range(0, x.shape[0], BATCH_SIZE):
            idx = perm[start : start + BATCH_SIZE]
            xb, yb = random_shift(x[idx], gen), y[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * idx.numel()
            correct += int((logits.argmax(1) == yb).sum())
        n = x.shape[0]
        print(
            f"  epoch {epoch + 1:2d}/{EPOCHS}  loss {total_loss / n:.4f}  "
            f"train-acc {correct / n:.4f}  ({time.perf_counter() - t0:.1f}s)"
        )
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.cat([model(x[i : i + 256]) for i in range(0, x.shape[0], 256)]).numpy()


# ------------------------------------------------------------------------- export


def export_onnx(model: nn.Module, path: Path) -> onnx.ModelProto:
    """Export with the dynamo exporter and write a self-contained opset-17 model to ``path``.

    torch 2.13's dynamo exporter implements opset >= 18 only; asked for 17 it warns, attempts a
    conversion and silently keeps 18 if that fails. So we export at 18 and down-convert the
    optimized graph explicitly with ``onnx.version_converter`` (then check and verify it). The
    exporter's default optimizer folds eval-mode BatchNormalization into the Conv weights;
    nothing is folded or rewritten here.
    """
    model.eval()
    example = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=EXPORT_OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"image": {0: torch.export.Dim("batch")}},
        external_data=False,
        verbose=False,
    )
    assert program is not None
    proto = program.model_proto  # weights are in-memory tensors -> embedded in the proto
    if proto.opset_import[0].version != OPSET:
        proto = onnx.version_converter.convert_version(proto, OPSET)

    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    onnx.save_model(proto, str(path), save_as_external_data=False)
    # Guarantee a self-contained file (no ``.data`` side files, no external tensors).
    assert not list(path.parent.glob(path.name + "?*")), "unexpected side files"
    proto = onnx.load(str(path), load_external_data=False)
    external = [
        t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    assert not external, f"external tensors left in {path}: {external}"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def io_shape(value: onnx.ValueInfoProto) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in dims]


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_predict(sess: ort.InferenceSession, x: np.ndarray, batch: int) -> np.ndarray:
    outs = [
        sess.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + batch]})[0] for i in range(0, len(x), batch)
    ]
    return np.concatenate(outs)


def bench(path: Path, x: np.ndarray, warmup: int = 10, runs: int = 50) -> dict[str, float]:
    """Median ORT latency in milliseconds per call, keyed 'b{batch}_t{threads}'."""
    out: dict[str, float] = {}
    for threads in (1, 2):
        sess = ort_session(path, threads)
        for batch in (1, 32):
            feed = {INPUT_NAME: np.ascontiguousarray(x[:batch])}
            for _ in range(warmup):
                sess.run([OUTPUT_NAME], feed)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                sess.run([OUTPUT_NAME], feed)
                times.append(time.perf_counter() - t0)
            out[f"b{batch}_t{threads}"] = 1e3 * statistics.median(times)
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--no-bench", action="store_true", help="skip the ORT latency table")
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    t_start = time.perf_counter()

    images, labels = load_images()
    train_idx, calib_idx, eval_idx = split_indices(labels)
    print(
        f"digits: {len(labels)} images -> train {len(train_idx)} "
        f"(calib {len(calib_idx)} drawn from it), eval {len(eval_idx)}"
    )

    model = DigitsCNN()
    flops, rows = count_flops(model)
    n_params = sum(p.numel() for p in model.parameters())
    print("per-sample compute (Conv2d/Linear, FLOPs = 2 x MACs):")
    for name, desc, macs in rows:
        print(f"  {name:28s} {desc:44s} {2 * macs / 1e6:7.3f} MFLOPs")
    print(f"  total {flops / 1e6:.2f} MFLOPs ({flops / 2e6:.2f} MMACs), {n_params} parameters")

    x_train = torch.from_numpy(images[train_idx])
    y_train = torch.from_numpy(labels[train_idx])
    t0 = time.perf_counter()
    train(model, x_train, y_train)
    train_seconds = time.perf_counter() - t0
    print(f"training took {train_seconds:.1f}s")

    x_eval, y_eval = images[eval_idx], labels[eval_idx]
    torch_logits = predict(model, torch.from_numpy(x_eval))
    torch_acc = float((torch_logits.argmax(1) == y_eval).mean())
    print(f"torch eval accuracy: {torch_acc:.4f}")

    model_path = out_dir / MODEL_FILE
    proto = export_onnx(model, model_path)
    in_shape, out_shape = io_shape(proto.graph.input[0]), io_shape(proto.graph.output[0])
    assert [i.name for i in proto.graph.input] == [INPUT_NAME], proto.graph.input
    assert [o.name for o in proto.graph.output] == [OUTPUT_NAME], proto.graph.output
    assert in_shape[1:] == [1, IMAGE_SIZE, IMAGE_SIZE] and isinstance(in_shape[0], str), in_shape
    assert out_shape[1:] == [N_CLASSES] and isinstance(out_shape[0], str), out_shape
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert opset == OPSET, opset
    op_hist = dict(sorted(collections.Counter(n.op_type for n in proto.graph.node).items()))
    print(f"onnx: input {in_shape}, output {out_shape}, opset {opset}")
    print(f"onnx op histogram: {op_hist}")
    bn_folded = "BatchNormalization" not in op_hist

    sess = ort_session(model_path, 2)
    max_diff = 0.0
    for batch in (1, 32, N_EVAL):  # exercises the dynamic batch dimension
        onnx_logits = ort_predict(sess, x_eval, batch)
        max_diff = max(max_diff, float(np.abs(onnx_logits - torch_logits).max()))
    onnx_acc = float((onnx_logits.argmax(1) == y_eval).mean())
    print(f"onnxruntime eval accuracy: {onnx_acc:.4f}, max |onnx - torch| = {max_diff:.2e}")
    assert max_diff < ATOL, f"ONNX/torch mismatch {max_diff} >= {ATOL}"
    assert onnx_acc == torch_acc, (onnx_acc, torch_acc)

    np.savez_compressed(
        out_dir / CALIB_FILE, image=images[calib_idx], labels=labels[calib_idx].astype(np.int64)
    )
    np.savez_compressed(out_dir / EVAL_FILE, image=x_eval, labels=y_eval.astype(np.int64))

    meta: dict[str, Any] = {
        "name": "digits_cnn",
        "description": "Small ResNet-style CNN classifying 32x32 upscaled handwritten digits",
        "source": {
            "dataset": "sklearn.datasets.load_digits (UCI ML hand-written digits, 1797 8x8 images, "
            "pixel values 0..16, bundled with scikit-learn, no download)",
            "scikit_learn": sklearn.__version__,
        },
        "preprocessing": {
            "steps": [
                "divide 8x8 pixel values by 16 -> [0, 1]",
                "torch.nn.functional.interpolate to 32x32, mode='bilinear', align_corners=False",
                "clamp to [0, 1], float32, layout NCHW [N, 1, 32, 32]",
            ],
            "normalization": "none (model input is the [0, 1] image)",
            "training_augmentation": f"random integer shift in [-{MAX_SHIFT}, {MAX_SHIFT}] px, zero fill",
        },
        "split": {
            "seed": SEED,
            "method": "sklearn train_test_split, stratified by label: eval held out first, "
            "calibration drawn from the training split",
            "train": len(train_idx),
            "calib": len(calib_idx),
            "eval": len(eval_idx),
            "calib_indices": calib_idx.tolist(),
            "eval_indices": eval_idx.tolist(),
        },
        "files": {"model": MODEL_FILE, "calib": CALIB_FILE, "eval": EVAL_FILE},
        "model": {
            "architecture": "conv3x3(1->32)+BN+ReLU, conv3x3(32->32)+BN+ReLU, maxpool2, "
            "conv3x3/s2(32->64)+BN+ReLU projection, residual block "
            "[conv3x3(64)+BN+ReLU, conv3x3(64)+BN, +identity, ReLU], maxpool2, "
            "conv3x3(64->128)+BN+ReLU, global average pool (AvgPool 4x4 over the 4x4 map), "
            "flatten, Linear(128->10)",
            "input": {"name": INPUT_NAME, "shape": in_shape, "dtype": "float32"},
            "output": {"name": OUTPUT_NAME, "shape": out_shape, "dtype": "float32"},
            "parameters": n_params,
            "mflops_per_sample": round(flops / 1e6, 3),
            "mflops_definition": "2 x MACs of Conv/Linear layers; elementwise ops not counted",
            "opset": opset,
            "onnx_op_histogram": op_hist,
            "batchnorm_folded_by_exporter": bn_folded,
        },
        "training": {
            "optimizer": "Adam",
            "lr": LR,
            "schedule": "OneCycleLR",
            "weight_decay": WEIGHT_DECAY,
            "epochs": EPOCHS,
            "batch_size": BATCH_SIZE,
            "torch_seed": SEED,
        },
        "metrics": {
            "eval_accuracy_torch": torch_acc,
            "eval_accuracy_onnx": onnx_acc,
            "max_abs_diff_onnx_vs_torch": max_diff,
        },
        "export": {
            "exporter": f"torch.onnx.export(dynamo=True, opset_version={EXPORT_OPSET}, optimize=True)"
            f" + onnx.version_converter.convert_version(..., {OPSET})",
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "onnxscript": _version("onnxscript"),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    (out_dir / META_FILE).write_text(dumps_json(meta))

    total = 0
    for fname in (MODEL_FILE, CALIB_FILE, EVAL_FILE, META_FILE):
        size = (out_dir / fname).stat().st_size
        total += size
        print(f"wrote {out_dir / fname} ({size / 1024:.1f} KiB)")
    print(f"total {total / 1024:.1f} KiB; elapsed {time.perf_counter() - t_start:.1f}s")

    if not args.no_bench:
        lat = bench(model_path, x_eval)
        print("onnxruntime latency (median of 50 runs after warm-up, ms per call):")
        for threads in (1, 2):
            print(
                f"  {threads} thread(s): batch 1 {lat[f'b1_t{threads}']:.3f} ms, "
                f"batch 32 {lat[f'b32_t{threads}']:.3f} ms "
                f"({lat[f'b32_t{threads}'] / 32:.3f} ms/sample)"
            )
    return 0


def dumps_json(obj: Any) -> str:
    """``json.dumps(indent=2)`` but with lists of numbers kept on one line."""
    text = json.dumps(obj, indent=2)
    return (
        re.sub(
            r"\[\s*(-?\d[\d.eE+-]*(?:,\s*-?\d[\d.eE+-]*)*)\s*\]",
            lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]",
            text,
        )
        + "\n"
    )


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
