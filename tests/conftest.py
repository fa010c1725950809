"""Shared fixtures: the real pretrained models that ship inside PyPI wheels (cached per machine)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import realmodels

SENTENCES_TXT = Path(__file__).resolve().parent / "data" / "sentences.txt"


@pytest.fixture(scope="session")
def realmodels_cache_dir() -> Path:
    path = realmodels.default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def minilm_onnx(realmodels_cache_dir: Path) -> Path:
    return realmodels.minilm_model(realmodels_cache_dir)


@pytest.fixture(scope="session")
def minilm_tokenizer_json(realmodels_cache_dir: Path) -> Path:
    return realmodels.minilm_tokenizer(realmodels_cache_dir)


@pytest.fixture(scope="session")
def ppocr_cls_onnx(realmodels_cache_dir: Path) -> Path:
    return realmodels.ppocr_cls_model(realmodels_cache_dir)


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    return [line.strip() for line in SENTENCES_TXT.read_text(encoding="utf-8").splitlines() if line.strip()]
