"""The sentence encoder tuned on the intents' own examples, for few-shot intent classification.

General-purpose embeddings place "I was charged twice" and "there is a pending charge on my
card" close together; ten examples an intent are too few for a linear classifier to pull them
apart. So the top layers of a copy of the encoder are tuned with a supervised contrastive loss
(SupCon, Khosla et al. 2020): a batch's examples of one intent are pulled together and every
other example pushed away.

Out-of-scope examples take part, each as a class of its own: pushed away from the intents and
never pulled towards one another. Trained as one class, as SetFit does with every label, they
are packed into one cluster far from the intents; the off-topic messages customers really send
are not in that cluster, land next to some intent, and are no longer rejected.

The tuned copy is saved under a name that hashes the base weights, the examples and the
options, so a restart with the same training data loads it instead of training again. The
calibration folds' vectors are kept the same way, so a restart trains nothing.

Since only the top layers differ, the server runs both encoders as one ONNX graph
(`TwoHeadEncoder`): the lower layers once, then the base and the tuned top layers, so a
message costs about a third more than one encode rather than two. Run as two models, each
evicted the other's weights from the CPU's caches: 8 ms a message against 2 ms for one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.dialogue.nlu import OUT_OF_SCOPE
from bot.dialogue.training_data import Example
from bot.ports import Encoder
from kb_index.cached_arrays import keep_array, load_array, prune
from kb_index.encoder import (
    WEIGHTS,
    OnnxEncoder,
    RecentVectors,
    eight_bit_matmuls,
    load_encoder,
    resolve_model_path,
    trace_to_onnx,
    weights_digest,
)

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
KEEP = 3  # tuned copies (and their calibration folds' vectors) kept in the cache directory, newest first


@dataclass(frozen=True)
class TuningOptions:
    """Chosen on data/nlu_eval/fine/dev.yml (docs/dialogue.md)."""

    layers: int = 2               # the top transformer layers tuned; the lower ones stay as they were
    epochs: int = 4
    learning_rate: float = 5e-5
    temperature: float = 0.1
    batch_size: int = 64
    per_intent: int = 4           # examples of one intent that go into a batch together
    max_examples: int = 2000      # an epoch sees at most this many (a time budget for big training sets)
    seed: int = 0


class ContrastiveTuner:
    """Tunes copies of the base encoder on training examples; the classifier asks it for encoders."""

    def __init__(self, model: str, cache_dir: Path, backend: str = "auto", options: TuningOptions | None = None,
                 progress: Progress | None = None, one_graph: bool = False, threads: int = 0) -> None:
        """`one_graph`: `tuned` gives the intent head of a `TwoHeadEncoder`, kept in `heads` for the caller to
        encode everything else with (a server), run on `threads` (0: one per core); else a model of its own
        (`switchboard nlu test`)."""
        self._model_path = resolve_model_path(model)
        self._one_graph = one_graph
        self._threads = threads
        self.heads: TwoHeadEncoder | None = None
        self._cache_dir = cache_dir
        self._backend = backend
        self.options = options or TuningOptions()
        self._progress = progress or (lambda stage: None)

    def tuned(self, examples: Sequence[Example]) -> Encoder:
        """An encoder tuned on `examples`, run with ONNX Runtime (trained once, then loaded from the cache)."""
        if self._one_graph:
            self.heads = self.two_heads(examples)
            return self.heads.intents
        return load_encoder(str(self._tuned_copy(examples)), self._cache_dir / "onnx", self._backend)

    def two_heads(self, examples: Sequence[Example]) -> TwoHeadEncoder:
        """The base encoder and the one tuned on `examples` as one ONNX graph (see the module's doc)."""
        tuned = self._tuned_copy(examples)
        name = f"two-heads-{weights_digest(self._model_path)}-{weights_digest(tuned)}-{WEIGHTS}.onnx"
        target = self._cache_dir / "onnx" / name
        if target.exists():
            os.utime(target)
        else:
            export_two_heads(self._model_path, tuned, self.options.layers, target)
            prune(self._cache_dir, "onnx/two-heads-*.onnx", KEEP)
        return TwoHeadEncoder(target, self._model_path, threads=self._threads)

    def _tuned_copy(self, examples: Sequence[Example]) -> Path:
        target = self._cache_dir / f"intents-{self._key(examples)}"
        if target.is_dir():
            log.info("intent encoder tuned on these examples already: %s", target.name)
            os.utime(target)  # in use: the newest, kept when older copies are pruned
        else:
            model = self._train(examples)
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".tuning-", dir=self._cache_dir))
            try:
                model.save(str(staging))
                os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            prune(self._cache_dir, "intents-*", KEEP)
        return target

    def fold_vectors(self, train: Sequence[Example], texts: Sequence[str]) -> np.ndarray:
        """`texts` encoded by a copy tuned on `train` alone: a calibration fold's view (the copy is not kept)."""
        target = self._cache_dir / f"fold-{self._key(train, texts)}.npy"
        kept = load_array(target)
        if kept is not None:
            return np.asarray(kept, dtype=np.float32)
        model = self._train(train)
        vectors = np.asarray(model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                          convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
        keep_array(target, vectors, "fold-*.npy", KEEP * 5)
        return vectors

    def _key(self, examples: Sequence[Example], texts: Sequence[str] = ()) -> str:
        digest = hashlib.sha256()
        digest.update(weights_digest(self._model_path).encode())
        digest.update(json.dumps(asdict(self.options), sort_keys=True).encode())
        for example in examples:
            digest.update(json.dumps([example.intent, example.text]).encode())
        digest.update(json.dumps(list(texts)).encode())
        return digest.hexdigest()[:16]

    def _train(self, examples: Sequence[Example]) -> Any:
        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from sentence_transformers import SentenceTransformer

        options = self.options
        torch.manual_seed(options.seed)
        generator = random.Random(options.seed)
        model = SentenceTransformer(str(self._model_path), device="cpu", local_files_only=True)
        transformer: Any = model[0].auto_model
        layers = list(transformer.encoder.layer)
        for parameter in model.parameters():
            parameter.requires_grad = False
        trained = [p for layer in layers[len(layers) - options.layers:] for p in layer.parameters()]
        for parameter in trained:
            parameter.requires_grad = True
        optimiser = torch.optim.AdamW(trained, lr=options.learning_rate)
        texts = [e.text for e in examples]
        classes: dict[str, int] = {}
        labels = torch.tensor([classes.setdefault(e.intent if e.intent != OUT_OF_SCOPE else f"\0{i}", len(classes))
                               for i, e in enumerate(examples)])
        model.train()
        for epoch in range(1, options.epochs + 1):
            self._progress(f"tuning the encoder on the examples (epoch {epoch} of {options.epochs})")
            for batch in self._batches(examples, generator):
                features = model.preprocess([texts[i] for i in batch])
                embeddings = torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=1)
                loss = _supervised_contrastive(embeddings, labels[batch], options.temperature)
                if loss is None:
                    continue
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        model.eval()
        return model

    def _batches(self, examples: Sequence[Example], generator: random.Random) -> list[list[int]]:
        """Batches in which each intent's examples come in groups of `per_intent`, so most have a partner."""
        options = self.options
        by_intent: dict[str, list[int]] = {}
        for i, example in enumerate(examples):
            by_intent.setdefault(example.intent, []).append(i)
        groups: list[list[int]] = []
        for intent, members in by_intent.items():
            generator.shuffle(members)
            size = 1 if intent == OUT_OF_SCOPE else options.per_intent
            groups += [members[i:i + size] for i in range(0, len(members), size)]
        generator.shuffle(groups)
        order = [i for group in groups for i in group][:options.max_examples]
        return [order[i:i + options.batch_size] for i in range(0, len(order), options.batch_size)]


def _supervised_contrastive(embeddings: Any, labels: Any, temperature: float) -> Any:
    """The SupCon loss over one batch of unit vectors; None when no example has a partner in it."""
    import torch

    size = len(labels)
    itself = torch.eye(size, dtype=torch.bool)
    logits = (embeddings @ embeddings.T / temperature).masked_fill(itself, float("-inf"))
    log_probability = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    partners = (labels[:, None] == labels[None, :]) & ~itself
    counts = partners.sum(dim=1)
    anchors = counts > 0
    if not anchors.any():
        return None
    pulled = log_probability.masked_fill(~partners, 0.0).sum(dim=1)
    return -(pulled[anchors] / counts[anchors]).mean()


def export_two_heads(base_path: Path, tuned_path: Path, layers: int, target: Path) -> None:
    """One ONNX graph with two outputs: the base model's token states, and those of the copy whose top
    `layers` were tuned (the layers below are the base model's, shared)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModel
    from transformers.masking_utils import create_bidirectional_mask

    base = AutoModel.from_pretrained(str(base_path), local_files_only=True).eval()
    tuned = AutoModel.from_pretrained(str(tuned_path), local_files_only=True).eval()
    split = len(base.encoder.layer) - layers

    class TwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base
            self.tuned_top = torch.nn.ModuleList(list(tuned.encoder.layer)[split:])

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            states = self.base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            mask = create_bidirectional_mask(config=self.base.config, inputs_embeds=states,
                                             attention_mask=attention_mask)
            for layer in self.base.encoder.layer[:split]:
                states = layer(states, mask)
            shared, intents = states, states
            for layer in self.base.encoder.layer[split:]:
                shared = layer(shared, mask)
            for layer in self.tuned_top:
                intents = layer(intents, mask)
            return shared, intents

    trace_to_onnx(TwoHeads(), ["base", "intents"], target, transform=eight_bit_matmuls)
    log.info("exported the base and the intent encoder as one graph: %s", target.name)


class TwoHeadEncoder:
    """The base encoder (`encode`, for the knowledge base and everything else) and the intent encoder
    (`intents.encode`) from one run of one graph.

    A message is encoded once, by the engine through `encode`; the intent vectors of the texts it
    encoded last are kept for the moment `intents.encode` asks for them, and computed if they are gone.
    """

    def __init__(self, onnx_path: Path, model_path: Path, remembered: int = 1024, threads: int = 0) -> None:
        self._graph = OnnxEncoder(onnx_path, model_path, threads)
        self.dimension = self._graph.dimension
        self._intent_vectors = RecentVectors(remembered)
        self.intents = _IntentHead(self)

    @property
    def threads(self) -> int:
        """ONNX Runtime's threads for one run of the graph (0: one per core)."""
        return self._graph.threads

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        base, intents = self._graph.encode_outputs(texts)
        self._intent_vectors.put(texts, intents)
        return base

    def intent_vectors(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        found = self._intent_vectors.get(texts)
        missing = [text for text in dict.fromkeys(texts) if text not in found]
        if missing:
            found.update(zip(missing, self._graph.encode_outputs(missing)[1], strict=True))
        return np.vstack([found[text] for text in texts])


class _IntentHead:
    def __init__(self, owner: TwoHeadEncoder) -> None:
        self._owner = owner
        self.dimension = owner.dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._owner.intent_vectors(texts)
