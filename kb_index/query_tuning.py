"""The multilingual encoder's questions tuned to one knowledge base, from questions labelled with their article.

multilingual-e5-small places a question in another language near the right English article often enough
(the right one among the first three for about 85% of them), but its cosines sit in a narrow band, so a
threshold that declines questions the KB cannot answer declines many it can. A business that has labelled
questions (a `kb eval` set: question, expected article, or none when the KB cannot answer it) can teach the
encoder its own articles: a linear map of the question's vector, the identity plus a learnt matrix, trained
so that each labelled question's best passage is its article's and an unanswerable question scores below a
learnt bar against every article (softmax over the articles and "none", at a low temperature), against the
originals' passages (translations are scored in their own language, less an offset of their own). The articles'
example questions, which editors teach from the gaps report, are labelled by their article and fitted on too.
The passages' vectors stay as they are; the question is mapped at search time (one 384 x 384 product), and so
are the articles' example questions in the index, which are questions too.

Weight decay keeps the map near the identity (a question's vector moves to a cosine of about 0.91 with its
own). Measured on the sample shop (docs/kb-quality.md): each of the five languages' four dev splits scored
by a map fitted on the other three, reach 0.828 (0.62 untuned), 325 of 339 answers right, 235 of 285
unanswerable questions declined; on test, fitted on all four, 0.621 -> 0.863 (with two translations a language)
and 0.611 -> 0.842 (English articles only), 36 of 41 and 32 of 37 answers right. The more labelled questions,
the more it moves: dev and dev2 scored by a map fitted on the other alone reached 0.743, with dev3 0.828 (1,297
questions), and dev, dev2 and dev3 with dev4 0.843 (1,981). The decision reads the tuned scores with a policy of
its own (`LanguagePolicies.tuned`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bot.errors import SwitchboardError
from kb_index.cached_arrays import keep_array, load_array
from kb_index.evaluation import EvalCase, load_cases

ADAPTER = "multilingual_adapter.npy"  # the map, in a snapshot that has one
CACHE = "adapters"                     # fitted maps by what they were fitted on, under the index directory
KEEP_CACHED = 4
# Fewer labelled questions than this tune nothing: a map fitted on a few dozen moves the scores off the scale the
# tuned policy was calibrated on. Fitted on random samples of the sample shop's dev and dev3 questions and decided
# by that policy, the five languages' dev2 questions were reached less often than untuned, with more wrong
# answers, from 30 to 100 questions (reach 0.54-0.63 against 0.626, 74-89% of answers right against 92%), and
# more often from 200 (0.67 at 200, 0.72-0.73 at 300, 0.83 at all 855), declining as many or more
# (docs/kb-quality.md).
MIN_QUESTIONS = 200
# ... of which this many unanswerable: the bar is learnt from them. Fitted on the answerable dev and dev3 questions
# and 10, 30, 50 or 80 unanswerable ones, 53, 62, 64 and 67 of the 80 unanswerable dev2 questions were declined
# (63 untuned); with none, the bar is not learnt at all.
MIN_UNANSWERABLE = 30


@dataclass(frozen=True)
class QueryTuning:
    """How the map is fitted; chosen on the sample shop's dev splits."""

    temperature: float = 0.02
    weight_decay: float = 0.1
    # The unanswerable questions' share of the loss, however many of the labelled questions they are: the bar
    # (and so the scale the tuned policy reads) otherwise moved with the share. Tuned on the sample shop's
    # answerable dev and dev3 questions and 0, 30, 80, 120 or all 196 of its unanswerable ones, unweighted, the five
    # languages' dev2 questions were reached 0.48, 0.40, 0.72, 0.80 and 0.82 of the time; weighted, 0.81 to 0.85.
    none_share: float = 0.2
    epochs: int = 200
    learning_rate: float = 1e-3
    seed: int = 0


def labelled_questions(spec: str, base: Path = Path()) -> list[EvalCase]:
    """The questions of every file `spec` names (comma-separated paths or glob patterns, relative to `base`),
    each labelled with the article that answers it (`kb eval`'s CSV format)."""
    return [case for path in labelled_files(spec, base) for case in load_cases(path)]


def labelled_files(spec: str, base: Path = Path()) -> list[Path]:
    """The files `spec` names, in its order, each pattern's matches sorted."""
    files: list[Path] = []
    for pattern in (part.strip() for part in spec.split(",")):
        if not pattern:
            continue
        named = Path(pattern)
        root, rest = (Path(named.anchor), str(named.relative_to(named.anchor))) if named.is_absolute() \
            else (base, pattern)
        matched = sorted(root.glob(rest)) if any(c in pattern for c in "*?[") else [root / rest]
        if not matched:
            raise SwitchboardError(f"SWITCHBOARD_KB_QUESTIONS: no file matches {pattern!r}")
        for path in matched:
            if not path.is_file():
                raise SwitchboardError(f"SWITCHBOARD_KB_QUESTIONS: {path} is no file; name CSV files of "
                                       "labelled questions (question, expected_article_id), as kb eval reads")
        files += matched
    return files


def fit_adapter(questions: np.ndarray, labels: Sequence[str | None], passages: np.ndarray,
                topics: Sequence[str], tuning: QueryTuning = QueryTuning()) -> np.ndarray:
    """The map (dimension x dimension, float32) for question vectors `questions` labelled with the topic that
    answers each (None: none does), against `passages` (one row a passage, of `topics`)."""
    import torch  # imported here: a server that only searches never loads it

    names = sorted(set(topics))
    number = {name: i for i, name in enumerate(names)}
    members = np.zeros((len(names), len(topics)), dtype=bool)
    members[[number[t] for t in topics], np.arange(len(topics))] = True
    targets = [number.get(label, len(names)) if label is not None else len(names) for label in labels]
    unanswerable = np.array([label is None for label in labels])
    shares = np.where(unanswerable, tuning.none_share / max(int(unanswerable.sum()), 1),
                      (1 - tuning.none_share) / max(int((~unanswerable).sum()), 1))
    dimension = questions.shape[1]
    torch.manual_seed(tuning.seed)
    learnt = torch.zeros(dimension, dimension, requires_grad=True)
    bar = torch.tensor(0.8, requires_grad=True)  # the "none" logit, in cosine units
    optimiser = torch.optim.Adam([learnt, bar], lr=tuning.learning_rate)
    asked = torch.tensor(questions, dtype=torch.float32)
    found = torch.tensor(passages, dtype=torch.float32)
    outside = torch.tensor(~members)  # topics x passages: the passages each topic's best is not taken from
    wanted = torch.tensor(targets)
    weights = torch.tensor(shares, dtype=torch.float32)
    identity = torch.eye(dimension)
    for _ in range(tuning.epochs):
        mapped = asked @ (identity + learnt)
        cosines = (mapped / mapped.norm(dim=1, keepdim=True)) @ found.T
        by_topic = cosines[:, None, :].masked_fill(outside, -2.0).amax(dim=2)  # each topic's best passage
        logits = torch.cat([by_topic, bar.expand(len(asked), 1)], dim=1) / tuning.temperature
        loss = (torch.nn.functional.cross_entropy(logits, wanted, reduction="none") * weights).sum() \
            + tuning.weight_decay * (learnt ** 2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return (identity + learnt).detach().numpy().astype(np.float32)


def adapt(vectors: np.ndarray, adapter: np.ndarray) -> np.ndarray:
    """Question vectors mapped by `adapter` and normalised again."""
    mapped = vectors.astype(np.float32) @ adapter
    return mapped / np.linalg.norm(mapped, axis=1, keepdims=True)


def cache_key(encoder: str, passages: np.ndarray, topics: Sequence[str], questions: Sequence[EvalCase],
              tuning: QueryTuning) -> str:
    """What a map depends on: the encoder, the passages and their articles, the labelled questions, the tuning."""
    digest = hashlib.sha256(encoder.encode())
    digest.update(np.ascontiguousarray(passages, dtype=np.float32).tobytes())
    digest.update("\x1f".join(topics).encode())
    digest.update("\x1e".join(f"{q.question}\x1f{q.expected or ''}" for q in questions).encode())
    digest.update(repr(sorted(asdict(tuning).items())).encode())
    return digest.hexdigest()[:32]


def questions_key(encoder: str, texts: Sequence[str]) -> str:
    """What the labelled questions' vectors depend on: the encoder and the texts."""
    return "questions-" + hashlib.sha256("\x1e".join([encoder, *texts]).encode()).hexdigest()[:32]


def cached(index_dir: Path, key: str) -> np.ndarray | None:
    """A map (or the questions' vectors) kept under `key` by an earlier build, if there is one."""
    return load_array(index_dir / CACHE / f"{key}.npy")


def keep(index_dir: Path, key: str, array: np.ndarray) -> None:
    """Keep a fitted map (or the questions' vectors) under the index directory, and the few most recently used
    others of its kind: a publish fits again only when the articles or the questions changed."""
    kind = "questions-*.npy" if key.startswith("questions-") else "[!q]*.npy"
    keep_array(index_dir / CACHE / f"{key}.npy", array, kind, KEEP_CACHED)
