"""Dense retrieval over the live knowledge-base snapshot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bot.errors import SwitchboardError
from bot.messages import Passage
from bot.ports import Encoder
from kb_index.snapshot import current_snapshot, load_snapshot


class FaissRetriever:
    """Cosine nearest neighbours of a question among the snapshot's chunks, best first."""

    def __init__(self, index_dir: Path, encoder: Encoder) -> None:
        snapshot = current_snapshot(index_dir)
        if snapshot is None:
            raise SwitchboardError(f"no knowledge-base index in {index_dir}; run `switchboard kb build`")
        self._index, self._chunks = load_snapshot(snapshot)
        self._encoder = encoder
        self.snapshot = snapshot

    def search(self, text: str, k: int, vector: np.ndarray | None = None) -> list[Passage]:
        """Return up to `k` passages for a question; pass `vector` if it is already encoded."""
        if vector is None:
            vector = self._encoder.encode([text])[0]
        scores, ids = self._index.search(vector.reshape(1, -1).astype(np.float32), min(k, len(self._chunks)))
        passages = []
        for score, i in zip(scores[0], ids[0], strict=True):
            if i < 0:
                continue
            chunk = self._chunks[i]
            passages.append(Passage(chunk.article_id, chunk.title, chunk.url, chunk.heading, chunk.text,
                                    float(score)))
        return passages
