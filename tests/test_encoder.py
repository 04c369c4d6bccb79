"""The ONNX encoder gives sentence-transformers' vectors; batching keeps them."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from bot.errors import SwitchboardError
from bot.ports import Encoder
from kb_index.encoder import (
    DEFAULT_MODEL,
    BatchingEncoder,
    OnnxEncoder,
    SentenceTransformerEncoder,
    export_onnx,
    load_encoder,
)

TEXTS = [
    "how do I reset my password",
    "hi",
    "Gift card balance?? PO-1234567 plz",
    "¿Dónde está mi pedido? Ich möchte mit einem Mitarbeiter sprechen 🙂",
    "a much longer question about whether the tent I bought last summer is still covered by your warranty " * 20,
]


class CountingEncoder:
    """Wraps an encoder and records the size of every call."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.dimension = 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def torch_encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(DEFAULT_MODEL)


def test_onnx_and_sentence_transformers_give_the_same_vectors(
        encoder: Encoder, torch_encoder: SentenceTransformerEncoder) -> None:
    assert isinstance(encoder, OnnxEncoder)
    onnx_vectors, torch_vectors = encoder.encode(TEXTS), torch_encoder.encode(TEXTS)
    cosines = (onnx_vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


def test_the_export_is_cached_by_the_weights(encoder: Encoder, onnx_dir: Path) -> None:
    first = export_onnx(encoder.model_path, onnx_dir)  # type: ignore[attr-defined]
    mtime = first.stat().st_mtime_ns
    assert export_onnx(encoder.model_path, onnx_dir) == first  # type: ignore[attr-defined]
    assert first.stat().st_mtime_ns == mtime
    assert not [p.name for p in onnx_dir.iterdir() if p.name.startswith(".")]  # no staging files left
    assert first.name in [p.name for p in onnx_dir.iterdir()]


def test_torch_backend_and_bad_backend(tmp_path: Path) -> None:
    assert isinstance(load_encoder(DEFAULT_MODEL, tmp_path, "torch"), SentenceTransformerEncoder)
    with pytest.raises(SwitchboardError, match="SWITCHBOARD_ENCODER"):
        load_encoder(DEFAULT_MODEL, tmp_path, "gpu")


def test_concurrent_queries_are_batched_and_get_their_own_vectors(encoder: Encoder) -> None:
    counting = CountingEncoder(encoder)
    batching = BatchingEncoder(counting, window=0.05)
    texts = [f"question number {i} about my parcel" for i in range(16)]
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(texts))

    def ask(i: int) -> None:
        barrier.wait()
        results[i] = batching.encode([texts[i]])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batching.close()
    direct = encoder.encode(texts)
    for i in range(len(texts)):
        assert results[i].shape == (1, direct.shape[1])
        assert float(results[i][0] @ direct[i]) > 0.999
    assert len(counting.calls) < len(texts)  # merged into fewer model calls
    assert sum(counting.calls) == len(texts)


def test_a_failing_batch_raises_in_every_caller() -> None:
    class Broken:
        def encode(self, texts: Sequence[str]) -> np.ndarray:
            raise RuntimeError("model unavailable")

    batching = BatchingEncoder(Broken(), window=0.001)
    with pytest.raises(RuntimeError, match="model unavailable"):
        batching.encode(["hello"])
    batching.close()
