"""The ONNX encoder gives nearly sentence-transformers' vectors from 8-bit weights; batching keeps them."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from bot.errors import SwitchboardError
from bot.ports import Encoder
from kb_index.encoder import (
    DEFAULT_MODEL,
    WEIGHTS,
    BatchingEncoder,
    OnnxEncoder,
    SentenceTransformerEncoder,
    export_onnx,
    load_encoder,
    mean_pool,
    similar_lengths,
    vectors_name,
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


def test_onnx_in_8_bits_gives_nearly_sentence_transformers_vectors(
        encoder: Encoder, torch_encoder: SentenceTransformerEncoder) -> None:
    assert isinstance(encoder, OnnxEncoder)
    onnx_vectors, torch_vectors = encoder.encode(TEXTS), torch_encoder.encode(TEXTS)
    cosines = (onnx_vectors * torch_vectors).sum(axis=1)
    assert cosines.min() >= 0.995, cosines
    assert cosines.min() < 0.99999, "the 8-bit weights should move the vectors a little"


def test_every_weight_matrix_of_the_export_is_stored_in_8_bit_blocks(encoder: Encoder, onnx_dir: Path) -> None:
    graph = onnx.load(str(export_onnx(encoder.model_path, onnx_dir)))  # type: ignore[attr-defined]
    weights = {init.name for init in graph.graph.initializer}
    blocks = [node for node in graph.graph.node if node.op_type == "MatMulNBits"]
    float_matmuls = [node.name for node in graph.graph.node if node.op_type == "MatMul" and node.input[1] in weights]
    assert len(blocks) == 6 * 6  # six layers of q, k, v, attention out, intermediate and output
    assert not float_matmuls
    for node in blocks:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert (attributes["bits"], attributes["block_size"], attributes["accuracy_level"]) == (8, 128, 4)


def test_quantizing_leaves_the_process_logging_as_it_was() -> None:
    # ONNX Runtime's quantizer configures the root logger when first imported: in a fresh process.
    script = """
import logging
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from kb_index.encoder import eight_bit_matmuls
weight = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), "w")
node = helper.make_node("MatMul", ["x", "w"], ["y"], name="m")
graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight])
model = helper.make_model(graph)
eight_bit_matmuls(model)
print([n.op_type for n in model.graph.node], len(logging.getLogger().handlers), logging.getLogger().level)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.split("\n")[0] == f"['MatMulNBits'] 0 {logging.WARNING}", done.stdout + done.stderr


def test_vectors_are_named_by_how_the_weights_are_run() -> None:
    assert vectors_name(DEFAULT_MODEL, "torch") == DEFAULT_MODEL
    assert vectors_name(DEFAULT_MODEL, "onnx") == vectors_name(DEFAULT_MODEL, "auto") == f"{DEFAULT_MODEL}+{WEIGHTS}"


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


def test_mean_pooling_ignores_padding_and_stays_in_float32() -> None:
    states = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    mask = np.array([[1, 1, 1], [1, 0, 0]], dtype=np.int64)  # the second text is one token, padded to three
    pooled = mean_pool(states, mask)
    assert pooled.dtype == np.float32
    assert np.allclose(pooled[0], states[0].mean(axis=0)) and np.allclose(pooled[1], states[1, 0])


class RecordingSession:
    """The real ONNX Runtime session, recording the shape of every run's batch."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.batches: list[tuple[int, ...]] = []

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.batches.append(feeds["attention_mask"].shape)
        return self.inner.run(names, feeds)

    def get_outputs(self) -> Any:
        return self.inner.get_outputs()


@contextmanager
def recording_runs(model: Any) -> Iterator[RecordingSession]:
    """`model`'s ONNX Runtime session recorded while the block runs."""
    recording = RecordingSession(model._session)
    model._session = recording
    try:
        yield recording
    finally:
        model._session = recording.inner


def test_texts_are_grouped_by_length_shortest_first_within_the_limit() -> None:
    lengths = [3, 30, 4, 31, 100, 3]
    groups = similar_lengths(lengths, limit=2)
    assert [group.tolist() for group in groups] == [[0, 5], [2], [1, 3], [4]]
    assert similar_lengths([], limit=8) == []


def test_a_batch_runs_in_groups_of_similar_length_and_each_text_keeps_its_vector(encoder: Encoder) -> None:
    # Padded whole, "hi" would cost as much as the longest text: a customer's burst mixes both.
    assert isinstance(encoder, OnnxEncoder)
    texts = ["hi", "is the tent I bought last summer still covered by your warranty", "ok", "where is my order",
             "thanks so much", TEXTS[4], "can I return shoes I have worn outside?"]
    alone = np.vstack([encoder.encode([text]) for text in texts])
    with recording_runs(encoder) as recording:
        together = encoder.encode(texts)
    # Run beside others of its length, a text's vector moves by the batched kernels' rounding only.
    assert (together * alone).sum(axis=1).min() > 0.9999
    tokens = sum(len(encoding.ids) for encoding in encoder._tokenizer.encode_batch(texts))
    padded = sum(rows * width for rows, width in recording.batches)
    assert len(recording.batches) > 1 and padded <= 1.3 * tokens, recording.batches
