"""Texts as a source: tokenized with a ``tokenizer.json`` (the ``tokenizers`` library) into
the feeds a text model takes: ``input_ids``, ``attention_mask`` and ``token_type_ids``.

Every text is truncated and padded to ``max_length`` tokens, so samples share one shape
``(max_length,)``. A model takes some of the three arrays; binding keeps those and drops the
others quietly. Texts come from a list of strings or a ``.txt`` file (one text per line, blank
lines skipped), which is streamed: it is counted once up front and tokenized a chunk of
lines at a time while iterating. ``tokenizers`` is imported only here, when used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from quantscope.data.batch import Chunk, Source
from quantscope.data.checks import validate_int
from quantscope.errors import ConfigError, DataError, EmptyDatasetError

logger = logging.getLogger(__name__)

TEXT_INPUTS: Final = ("input_ids", "attention_mask", "token_type_ids")
_CHUNK: Final = 64
_PAD_TOKENS: Final = ("[PAD]", "<pad>", "<|pad|>", "<PAD>")


def load_tokenizer(tokenizer: Any, max_length: int) -> Any:
    """A private copy of ``tokenizer`` (a path to tokenizer.json, a ``tokenizers.Tokenizer``,
    or a fast ``transformers`` tokenizer) that truncates and pads to ``max_length``."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise ConfigError(
            "from_texts needs the tokenizers library: pip install tokenizers"
        ) from exc
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)  # a transformers fast tokenizer
    try:
        if isinstance(backend, Tokenizer):
            tok = Tokenizer.from_str(backend.to_str())  # never change the caller's tokenizer
        elif isinstance(tokenizer, str | Path):
            tok = Tokenizer.from_file(str(tokenizer))
        else:
            raise ConfigError(
                f"tokenizer must be a path to tokenizer.json or a tokenizers.Tokenizer, got "
                f"{type(tokenizer).__name__}"
            )
    except Exception as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"cannot load tokenizer {tokenizer}: {exc}") from exc
    padding = tok.padding or {}
    pad_id, pad_token = padding.get("pad_id"), padding.get("pad_token")
    if pad_id is None:
        found = [(t, tok.token_to_id(t)) for t in _PAD_TOKENS if tok.token_to_id(t) is not None]
        pad_token, pad_id = found[0] if found else ("[PAD]", 0)
        if not found:
            logger.info("the tokenizer has no padding token; padding with id 0 (masked out)")
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
    return tok


def _encode(tok: Any, texts: list[str], dtype: np.dtype) -> dict[str, np.ndarray]:
    encodings = tok.encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=dtype),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=dtype),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=dtype),
    }


def _file_lines(path: Path) -> Iterator[str]:
    """The non-blank lines of a UTF-8 text file, decoded line by line (errors name the line)."""
    try:
        with path.open("rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise DataError(
                        f"text file {path} is not UTF-8 (line {number}): save it as UTF-8"
                    ) from None
                if text.strip():
                    yield text
    except OSError as exc:
        raise DataError(f"cannot read text file {path}: {exc.strerror or exc}") from exc


def _text_list(texts: Any) -> list[str]:
    if isinstance(texts, bytes) or not isinstance(texts, Sequence):
        raise ConfigError(f"from_texts takes a list of strings or a .txt file, got {type(texts).__name__}")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise DataError(f"text {bad[0]} is a {type(texts[bad[0]]).__name__}, not a string")
    return list(texts)


def text_source(
    texts: Any, tokenizer: Any, max_length: int, dtype: Any = "int64", labels: Any = None
) -> Source:
    """The source of :meth:`Dataset.from_texts`."""
    max_length = validate_int(max_length, "max_length", 1)
    out_dtype = np.dtype(dtype)
    if out_dtype.kind not in "iu":
        raise ConfigError(f"from_texts dtype must be an integer type, got {out_dtype}")
    tok = load_tokenizer(tokenizer, max_length)
    if isinstance(texts, str | Path):
        path = Path(texts)
        if not path.is_file():
            raise DataError(f"text file {path} does not exist")
        n = sum(1 for _ in _file_lines(path))
        where = f"text file {path}"

        def lines() -> Iterator[str]:
            return _file_lines(path)
    else:
        listed = _text_list(texts)
        n, where = len(listed), f"list of {len(listed)} texts"

        def lines() -> Iterator[str]:
            return iter(listed)

    if n == 0:
        raise EmptyDatasetError(f"{where} holds no text")
    label_array = None if labels is None else np.asarray(labels)
    if label_array is not None and label_array.shape[:1] != (n,):
        raise DataError(f"{n} texts but labels of shape {label_array.shape}")

    def chunk(batch: list[str], start: int) -> Chunk:
        def load(kind: str) -> Any:
            if kind == "inputs":
                return _encode(tok, batch, out_dtype)
            if kind == "labels":
                return None if label_array is None else label_array[start : start + len(batch)]
            return {}

        def describe(row: int) -> str:
            return f"text {start + row}"

        return Chunk(len(batch), load, describe)

    def chunks() -> Iterator[Chunk]:
        batch: list[str] = []
        start = 0
        for text in lines():
            batch.append(text)
            if len(batch) == _CHUNK:
                yield chunk(batch, start)
                start += len(batch)
                batch = []
        if batch:
            yield chunk(batch, start)

    return Source(
        where, n, TEXT_INPUTS, label_array is not None, chunks, optional=frozenset(TEXT_INPUTS)
    )
