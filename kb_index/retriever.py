"""Hybrid retrieval over the live snapshot: dense cosine fused with a BM25 bonus, reloaded live.

The fused score is `cosine + lexical_weight * b / (b + lexical_saturation)`, where `b`
is the chunk's BM25 score. The bonus saturates, so rare words, product codes and order
numbers lift the passages that contain them without letting word overlap outweigh
meaning. The weights were tuned on data/kb_eval.csv (see docs/kb-quality.md).

A question in another language than English is matched by the multilingual encoder against
the same chunks, when the snapshot was built with it: its score is that cosine alone (English
words and stems, and English typo mending, have nothing to say about it). An article written in the
question's own language, an original (a German shop's German articles) or a translation, is scored
on the same scale less its language's offset, with a lexical bonus in that language where it has one
(kb_index.own_language); an article with a version in the question's language is matched by that
version only. Translations into other languages are never matched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bot.errors import SwitchboardError
from bot.language import base_language, is_english, with_fallback
from bot.messages import Passage
from bot.notifier import Notifier
from bot.ports import Encoder
from kb_index.multilingual import MultilingualModel
from kb_index.own_language import ACROSS_LANGUAGES, OWN_LANGUAGES, OwnLanguage, own_language, pair_offset
from kb_index.query_tuning import adapt
from kb_index.snapshot import Snapshot, current_snapshot, load_snapshot, pointer_stamp, tokenize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fusion:
    lexical_weight: float = 0.4
    lexical_saturation: float = 2.0
    candidates: int = 30  # from each of the dense and the lexical side (and past the example questions)
    # Subtracted from an example question's score (see _less_examples), for English questions and for the
    # multilingual encoder's: the smallest that costs at most one decline of dev2 (English; dev taught) or
    # of the other half of the other-language dev sets (half taught).
    example_offset: float = 0.12
    multilingual_example_offset: float = 0.09
    # How a chunk in the question's own language is scored: an original, a translation or an example question.
    own_languages: Mapping[str, OwnLanguage] = field(default_factory=lambda: dict(OWN_LANGUAGES))
    # ... and one in another language than English, by (question's, chunk's) language, where it differs.
    across: Mapping[tuple[str, str], float] = field(default_factory=lambda: dict(ACROSS_LANGUAGES))
    # Subtracted as well from an article written only in the question's language where articles in other
    # languages compete with it (a KB of English articles and some German ones): the own-language offsets were
    # chosen on KBs all in one language, and there a Chinese article still outscored the right English one.
    # Chosen on the five languages' dev questions to such KBs: the most reached with 92% of answers right and
    # 80% declined. A translation keeps its language's offset (it cost the sample KB's translated articles
    # answers: "可以退貨嗎" became choices).
    mixed_own_offset: float = 0.01
    # An English question to a KB mixing English articles with others is matched by the multilingual encoder;
    # the English articles' scores are blended with the English encoder's, put on the multilingual scale by
    # carrying the English decision's answer score and lead (0.666, 0.06) onto the other languages' (0.802,
    # 0.02). The weight was chosen on dev with the English offset (own_language.py), docs/kb-quality.md.
    english_blend: float = 0.3
    english_scale: tuple[float, float] = (1 / 3, 0.802 - 0.666 / 3)


class HybridRetriever:
    """Finds passages for a question; a newly published snapshot replaces the live one without a restart.

    Each search checks the pointer file's fingerprint (one `stat`). When it moved, the new
    snapshot loads on a background thread while searches go on against the old one, which
    is then swapped out by replacing a single reference.
    """

    def __init__(self, index_dir: Path, encoder: Encoder, fusion: Fusion | None = None,
                 multilingual: MultilingualModel | None = None, vectors: str | None = None) -> None:
        """`vectors`: the name `encoder`'s vectors go by (`vectors_name`); a snapshot whose articles another
        encoder embedded is then warned about whenever one is loaded, at the start or published later."""
        self._index_dir = index_dir
        self._encoder = encoder
        self._fusion = fusion or Fusion()
        self._multilingual = multilingual
        self._vectors = vectors
        self._reloading = threading.Lock()
        self._stamp = pointer_stamp(index_dir)
        path = current_snapshot(index_dir)
        if path is None:
            raise SwitchboardError(f"no knowledge-base index in {index_dir}; run `switchboard kb build`")
        self._snapshot = self._loaded(path)

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot searches run against now."""
        return self._snapshot

    def multilingual_for(self, language: str | None) -> bool:
        """Whether a question in `language` is matched by the multilingual encoder (else by the English one):
        one in another language than English, and any question when an article is in another language (the
        English encoder does not read it)."""
        return self._reads_multilingual(self._snapshot, language)

    def _reads_multilingual(self, snapshot: Snapshot, language: str | None) -> bool:
        return (self._multilingual is not None and snapshot.multilingual is not None
                and (snapshot.foreign or (language is not None and not is_english(language))))

    def search(self, text: str, k: int, vector: np.ndarray | None = None, channel: str | None = None,
               audience: str = "customers", language: str | None = None) -> list[Passage]:
        """Return up to `k` passages for a question, best first; pass `vector` if already encoded.

        Only chunks written for `audience` and, if given, allowed on `channel` are returned. A question
        in another `language` than English goes to the multilingual index (see `multilingual_for`).
        """
        self._reload_if_published()
        snapshot = self._snapshot  # one snapshot for the whole search, whatever a publish swaps in meanwhile
        if self._reads_multilingual(snapshot, language):
            # A question too short to tell is taken for English where articles are (a KB of English and German
            # articles), and for none where there are none.
            return self._search_multilingual(snapshot, text, k, channel, audience,
                                             language or ("en" if "en" in snapshot.languages else ""), vector)
        return _passages(snapshot, self._english_scores(snapshot, text, vector, k), k, channel, audience,
                         tuned=bool(snapshot.labelled))

    def _english_scores(self, snapshot: Snapshot, text: str, vector: np.ndarray | None, k: int,
                        also: Sequence[int] = ()) -> dict[int, float]:
        """The English encoder's cosine fused with the BM25 bonus, by chunk: the best of the dense and of the
        lexical side, and the original chunks `also` lists; example questions less their offset."""
        mended = snapshot.vocabulary.correct(text)
        if vector is None or mended != text:
            # Typos mended against the KB's own words ("warrenty" -> "warranty") help both sides.
            text = mended
            vector = self._encoder.encode([text])[0]
        query = vector.reshape(1, -1).astype(np.float32)
        total = snapshot.searchable
        depth = min(max(self._fusion.candidates, k) + snapshot.examples, total)  # examples crowd the top

        cosines, ids = snapshot.index.search(query, depth)
        found = ids[0] >= 0
        ids, cosine = ids[0][found], cosines[0][found]
        tokens = tokenize([text])[0]
        lexical = snapshot.bm25.get_scores(tokens) if tokens else np.zeros(total, dtype=np.float32)
        lexical_top = np.argsort(-lexical)[:depth]
        others = np.fromiter(dict.fromkeys([*lexical_top[lexical[lexical_top] > 0].tolist(), *also]), dtype=np.int64)
        missing = others[~np.isin(others, ids)]
        if missing.size:
            ids = np.concatenate([ids, missing])
            cosine = np.concatenate([cosine, snapshot.index.reconstruct_batch(missing) @ query[0]])
        # In float64, as Python's floats: the same sums, whichever way they are taken.
        bonus = lexical[ids].astype(np.float64)
        fusion = self._fusion
        fused = cosine.astype(np.float64) + fusion.lexical_weight * bonus / (bonus + fusion.lexical_saturation)
        if snapshot.examples:
            fused -= np.where(snapshot.question_mask[ids], fusion.example_offset, 0.0)  # see _less_examples
        return dict(zip(ids.tolist(), fused.tolist(), strict=True))

    def _search_multilingual(self, snapshot: Snapshot, text: str, k: int, channel: str | None,
                             audience: str, language: str, vector: np.ndarray | None = None) -> list[Passage]:
        assert self._multilingual is not None and snapshot.multilingual is not None
        query = self._multilingual.queries.encode([text]).astype(np.float32)
        if snapshot.adapter is not None:
            query = adapt(query, snapshot.adapter)
        own = own_language(self._fusion.own_languages, language)
        mine = snapshot.languages.get(base_language(language)) if own is not None else None
        numbers, superseded = (mine.numbers, mine.superseded) if mine is not None else (frozenset(), frozenset())
        # Other languages' translations, and originals the question's language has a version of, are never
        # matched: the best of the rest are looked for past them.
        depth = min(max(self._fusion.candidates, k) + len(snapshot.chunks) - snapshot.searchable + len(superseded)
                    + snapshot.examples,
                    len(snapshot.chunks))
        cosines, ids = snapshot.multilingual.search(query, depth)
        scores = {i: cosine for i, cosine in zip(ids[0].tolist(), cosines[0].tolist(), strict=True)
                  if i in numbers or (0 <= i < snapshot.searchable and i not in superseded
                                      and i not in snapshot.labelled)}
        if own is not None and mine is not None:
            self._score_own_language(snapshot, scores, text, query[0], language, own)
        across = {code: pair_offset(self._fusion.across, language, code) or 0.0
                  for code in {snapshot.chunk_languages[i] for i in scores.keys() - numbers}}
        for i in scores.keys() - numbers:
            scores[i] -= across[snapshot.chunk_languages[i]]
        _less_examples(snapshot, scores, self._fusion.multilingual_example_offset)
        if is_english(language) and self._fusion.english_blend:
            self._blend_english(snapshot, scores, text, vector, k)
        return _passages(snapshot, scores, k, channel, audience, multilingual=True,
                         tuned=snapshot.adapter is not None)

    def _blend_english(self, snapshot: Snapshot, scores: dict[int, float], text: str, vector: np.ndarray | None,
                       k: int) -> None:
        """An English question to a KB that mixes English articles with others: blend, in place, the English
        originals' scores with the English encoder's fused with BM25 (which rank English text better), put on
        the multilingual scale (`Fusion.english_blend`, `Fusion.english_scale`)."""
        english = [i for i in scores if i < snapshot.searchable and is_english(snapshot.chunk_languages[i])]
        if not english:
            return
        fused = self._english_scores(snapshot, text, vector, k, also=english)
        weight = self._fusion.english_blend
        slope, intercept = self._fusion.english_scale
        for i in english:
            scores[i] = (1 - weight) * scores[i] + weight * (slope * fused[i] + intercept)

    def _score_own_language(self, snapshot: Snapshot, scores: dict[int, float], text: str, query: np.ndarray,
                            language: str, own: OwnLanguage) -> None:
        """Rescore, in place, the chunks written in the question's language: less the language's offset, and
        plus its lexical bonus where it has one (sections only it found are added); a chunk in another script
        of it (a traditional Chinese question, a simplified section) less that pair's offset instead."""
        mine = snapshot.languages[base_language(language)]
        assert snapshot.multilingual is not None
        pairs: dict[str, float | None] = {}  # by the chunk's language: a handful of codes, looked up once

        def pair(i: int) -> float | None:
            code = snapshot.chunk_languages[i]
            if code not in pairs:
                pairs[code] = pair_offset(self._fusion.across, language, code)
            return pairs[code]

        if own.lexical_weight:
            found = {i: b for i, b in mine.scores(text).items() if pair(i) is None}
            missing = [i for i in found if i not in scores]
            if missing:
                vectors = snapshot.multilingual.reconstruct_batch(np.array(missing, dtype=np.int64))
                scores.update(zip(missing, (vectors @ query).tolist(), strict=True))
            for i, b in found.items():
                scores[i] += own.lexical_weight * b / (b + own.lexical_saturation)
        # An article written only in the question's language, beside articles in others, less a little more
        # (English's offset was chosen in such KBs, the only ones where it meets the multilingual encoder).
        mixed = 0.0 if mine.alone or is_english(language) else self._fusion.mixed_own_offset
        for i in scores.keys() & mine.numbers:
            offset = pair(i)
            scores[i] -= (own.offset + (mixed if i < snapshot.searchable else 0.0)) if offset is None else offset

    def unknown_names(self, text: str, language: str | None = None, people: Sequence[str] = ()) -> list[str]:
        """Names in a question that the KB never mentions (kb_index.vocabulary); `people`'s are no topic."""
        self._reload_if_published()
        return self._snapshot.vocabulary.unknown_names(text, language, people)

    def translation(self, passage: Passage, language: str | None) -> Passage | None:
        """The same part of the passage's article in `language` (else in that language without its region,
        "zh" for "zh-TW"), if the article has that translation: its section most like the passage."""
        snapshot = self._snapshot
        if not language or self._multilingual is None or snapshot.multilingual is None:
            return None
        if passage.lang == language:
            return passage  # matched in the customer's language already
        candidates = next((found for wanted in with_fallback(language)
                           if (found := snapshot.translations.get((passage.topic, wanted)))), ())
        if not candidates:
            return None
        best = candidates[0]
        matched = snapshot.positions.get((passage.article_id, passage.text))
        if len(candidates) > 1 and matched is not None:
            vector = snapshot.multilingual.reconstruct(matched)  # stored at build: nothing is encoded here
            others = snapshot.multilingual.reconstruct_batch(np.array(candidates, dtype=np.int64))
            best = candidates[int(np.argmax(others @ vector))]
        chunk = snapshot.chunks[best]
        return Passage(chunk.article_id, chunk.title, chunk.url, chunk.heading, chunk.text, passage.score,
                       chunk.lang, chunk.translation_of, passage.multilingual, passage.tuned)

    def reload(self) -> bool:
        """Load the published snapshot now if it changed; True if it was swapped in."""
        with self._reloading:
            self._stamp = pointer_stamp(self._index_dir)
            path = current_snapshot(self._index_dir)
            if path is None or path == self._snapshot.path:
                return False
            try:
                self._snapshot = self._loaded(path)
            except SwitchboardError:
                log.exception("kept the live snapshot: the published one does not load")
                return False
            log.info("knowledge base %s is live (%d chunks)", path.name, len(self._snapshot.chunks))
            return True

    def _loaded(self, path: Path) -> Snapshot:
        """The snapshot at `path`, with a warning where its articles were not embedded as the questions will be:
        by another encoder (the vectors are close, not the same, so scores drift from the calibrated ones), or
        not by the multilingual one at all (questions in other languages are then matched as English)."""
        snapshot = load_snapshot(path)
        if self._multilingual is not None and snapshot.multilingual is None:
            log.warning("the knowledge-base snapshot %s was built without the multilingual encoder, so questions in "
                        "other languages than English are matched as if English; rebuild it: switchboard kb build",
                        path.name)
        encoders = [(snapshot.manifest.get("model"), self._vectors)] if self._vectors else []
        if self._multilingual is not None and snapshot.multilingual is not None:
            encoders.append((snapshot.manifest.get("multilingual"), self._multilingual.name))
        for built_by, served_by in encoders:
            if built_by != served_by:
                log.warning("the knowledge-base snapshot %s was embedded as %s and questions are embedded as %s: "
                            "close, not the same vectors; the next publish, or `switchboard kb build`, embeds the "
                            "articles again", path.name, built_by, served_by)
        return snapshot

    def _reload_if_published(self) -> None:
        stamp = pointer_stamp(self._index_dir)
        if stamp == self._stamp:
            return
        self._stamp = stamp  # one reload per publish, however many searches notice it
        threading.Thread(target=self.reload, name="switchboard-kb-reload", daemon=True).start()


def _less_examples(snapshot: Snapshot, scores: dict[int, float], offset: float) -> None:
    """Score example questions less `offset`, in place: a question scores higher against another question
    than against the section that answers it, so unscaled, every example an editor added answered more of
    the questions it did not match (docs/kb-quality.md, "Example questions")."""
    if snapshot.examples:
        examples = snapshot.question_mask
        for i in scores:
            if examples[i]:
                scores[i] -= offset


def _passages(snapshot: Snapshot, scores: dict[int, float], k: int, channel: str | None,
              audience: str, multilingual: bool = False, tuned: bool = False) -> list[Passage]:
    """The `k` best-scoring chunks allowed on `channel` for `audience`, as passages (`multilingual`: scored by
    that encoder; `tuned`: with its questions tuned to the KB)."""
    numbers = np.fromiter(scores, dtype=np.int64, count=len(scores))
    values = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    allowed = snapshot.serving(channel, audience)[numbers]
    numbers, values = numbers[allowed], values[allowed]
    best = numbers[np.argsort(-values, kind="stable")[:k]].tolist()  # stable: ties keep the scores' order
    found = [snapshot.chunks[i] for i in best]
    return [Passage(c.article_id, c.title, c.url, c.heading, c.text, scores[i], c.lang, c.translation_of,
                    multilingual, tuned) for c, i in zip(found, best, strict=True)]


# The notifier key a publish or rollback announces: every process sharing the notifier re-reads the pointer.
KB_PUBLISHED = "kb-published"


class SnapshotWatcher:
    """Reloads a retriever as soon as a process announces a publish or rollback (`KB_PUBLISHED`, over Redis
    when the notifier is shared). Searches notice a switched pointer by the file's fingerprint anyway, but on a
    network file system another host may see a cached fingerprint for up to a minute; `reload` reads the
    pointer itself, which such file systems check with the server."""

    def __init__(self, notifier: Notifier, retriever: HybridRetriever, follow: Callable[[], bool] | None = None,
                 check_seconds: float = 10.0) -> None:
        self._notifier = notifier
        self._retriever = retriever
        # Where hosts share no directory (kb_index.shipping): take the store's live snapshot first, on each
        # notice and every `check_seconds` too, in case a notice was missed (Redis restarting).
        self._follow = follow
        self._check_seconds = check_seconds
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switchboard-kb-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        seen = self._notifier.version(KB_PUBLISHED)
        checked = time.monotonic()
        while not self._stopping.is_set() and not self._notifier.closed:
            version = self._notifier.wait(KB_PUBLISHED, seen, timeout=1.0)
            due = self._follow is not None and time.monotonic() - checked >= self._check_seconds
            if version == seen and not due:
                continue
            seen = version
            if self._follow is not None:
                checked = time.monotonic()
                try:
                    self._follow()
                except Exception:  # the store away, a disk full: the watcher stays, and tries at the next check
                    log.exception("could not take the live snapshot from the store; trying again")
            self._retriever.reload()


class NoKnowledgeBase:
    """The retriever where there is no knowledge base (a Rasa project without a `kb/` directory): nothing is
    ever found, so the bot answers from its rules and intents and otherwise falls back."""

    snapshot = None

    def search(self, text: str, k: int, vector: np.ndarray | None = None, channel: str | None = None,
               audience: str = "customers", language: str | None = None) -> list[Passage]:
        return []

    def multilingual_for(self, language: str | None) -> bool:
        return False

    def translation(self, passage: Passage, language: str | None) -> Passage | None:
        return None

    def unknown_names(self, text: str, language: str | None = None, people: Sequence[str] = ()) -> list[str]:
        return []

    def reload(self) -> bool:
        return False
