"""Dataset.from_texts: a tokenizer.json made in the test, texts from a list or a .txt file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from data_helpers import I64, collect, spec, stacked

import quantscope as qs
import tinymodels
from quantscope.data import Dataset

tokenizers = pytest.importorskip("tokenizers")

VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4, "cat": 5, "sat": 6, "on": 7, "mat": 8}


@pytest.fixture
def tokenizer_json(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


TEXTS = ["the cat sat", "the cat sat on the mat the cat sat on the mat", "dog"]


def test_texts_become_padded_truncated_int64_feeds(tokenizer_json: Path) -> None:
    ds = Dataset.from_texts(TEXTS, tokenizer=tokenizer_json, max_length=8)
    assert ds.input_names == ("input_ids", "attention_mask", "token_type_ids")
    assert ds.num_samples == 3
    (batch,) = collect(ds, 3)
    ids = batch.inputs["input_ids"]
    assert ids.dtype == np.int64 and ids.shape == (3, 8)
    assert ids[0].tolist() == [2, 4, 5, 6, 3, 0, 0, 0]
    assert ids[1].tolist()[:3] == [2, 4, 5] and len(ids[1]) == 8  # truncated
    assert ids[2].tolist() == [2, 1, 3, 0, 0, 0, 0, 0]  # unknown word
    assert batch.inputs["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert batch.inputs["token_type_ids"].dtype == np.int64


def test_text_file_streams_lines_and_matches_the_list(tokenizer_json: Path, tmp_path: Path) -> None:
    texts = [f"the cat sat {'on the mat ' * (i % 3)}" for i in range(150)]
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts[:70]) + "\n\n" + "\n".join(texts[70:]) + "\n", encoding="utf-8")
    from_file = Dataset.from_path(path, tokenizer=tokenizer_json, max_length=12)
    from_list = Dataset.from_texts(texts, tokenizer=tokenizer_json, max_length=12, labels=np.arange(150) % 2)
    assert from_file.num_samples == 150  # the blank line is skipped
    a, b = stacked(collect(from_file, 32)), stacked(collect(from_list, 32))
    np.testing.assert_array_equal(a["input_ids"], b["input_ids"])
    np.testing.assert_array_equal(from_list.labels, np.arange(150) % 2)
    assert from_file.take(10, seed=1).fingerprint() == from_file.take(10, seed=1).fingerprint()


def test_binding_keeps_what_the_model_takes_without_a_warning(
    tokenizer_json: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = Dataset.from_texts(TEXTS, tokenizer=tokenizer_json, max_length=8)
    with caplog.at_level(logging.WARNING):
        bound = ds.bind([spec("input_ids", I64, ("N", 8)), spec("attention_mask", I64, ("N", 8))])
        (batch,) = collect(bound, 3)
    assert sorted(batch.inputs) == ["attention_mask", "input_ids"]
    assert not caplog.records
    with pytest.raises(qs.DataMismatchError, match=r"lacks model input\(s\) \['ids'\]"):
        ds.bind([spec("ids", I64, ("N", 8))])


def test_the_callers_tokenizer_is_not_changed(tokenizer_json: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    ds = Dataset.from_texts(["the cat"], tokenizer=tok, max_length=6)
    assert collect(ds, 1)[0].inputs["input_ids"].shape == (1, 6)
    assert tok.padding is None and tok.truncation is None


def test_quantize_a_text_model_from_texts(tokenizer_json: Path, tmp_path: Path) -> None:
    proto = tinymodels.embedding_mlp(vocab=len(VOCAB))
    for node in proto.graph.node:
        node.input[:] = ["input_ids" if name == "ids" else name for name in node.input]
    proto.graph.input[0].name = "input_ids"
    model = qs.load(tinymodels.save(proto, tmp_path / "text.onnx"))
    calib = Dataset.from_texts(TEXTS * 4, tokenizer=tokenizer_json, max_length=8)
    q = qs.quantize(model, qs.StaticInt8(num_samples=12), calib)
    assert q.calibration["samples"] == 12


def test_text_errors(tokenizer_json: Path, tmp_path: Path) -> None:
    with pytest.raises(qs.ConfigError, match="cannot load tokenizer"):
        Dataset.from_texts(TEXTS, tokenizer=tmp_path / "absent.json")
    with pytest.raises(qs.ConfigError, match="tokenizer must be a path"):
        Dataset.from_texts(TEXTS, tokenizer=42)
    with pytest.raises(qs.ConfigError, match="max_length must be at least 1"):
        Dataset.from_texts(TEXTS, tokenizer=tokenizer_json, max_length=0)
    with pytest.raises(qs.DataError, match="text 1 is a int"):
        Dataset.from_texts(["a", 3], tokenizer=tokenizer_json)  # type: ignore[list-item]
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"the cat\ncaf\xe9\n")
    with pytest.raises(qs.DataError, match=r"latin\.txt is not UTF-8 \(line 2\)"):
        Dataset.from_texts(latin, tokenizer=tokenizer_json)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(qs.EmptyDatasetError, match="holds no text"):
        Dataset.from_texts(empty, tokenizer=tokenizer_json)
    with pytest.raises(qs.ConfigError, match="pass tokenizer="):
        Dataset.from_path(empty)
