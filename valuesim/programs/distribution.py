"""Each LM program's answer as a probability for every option (`probs`), and how it was measured (`probs_method`).

- `logprobs`: the answer call asks for log-probabilities (valuesim/lm/logprobs.py reads the option codes' share
  of them). An LM that refuses the request (a llama.cpp server started without logits_all answers 500) is
  asked again without it, and not asked again in this process.
- `samples`: with `--samples K` (`program.samples`) and no logprobs, the whole program runs K more times at
  temperature 1 with DSPy's `rollout_id` 1..K (and seed 1..K, so the embedded engine draws differently), each
  bypassing the cache entry of the others; the answers' shares are the distribution.
- `point`: otherwise all the probability is on the answer, recorded as such.

The answer is the most probable option, the written answer on a tie.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import dspy

from valuesim.lm import logprobs

SAMPLE_TEMPERATURE = 1.0  # the model's own distribution, the one its logprobs give
# The rollout a sampled run is in, as a DSPy setting: dspy.context reaches dspy.Parallel's threads, and the answer
# calls add it to their own config, so it applies whichever LM a predictor uses (valuesim.load sets one per program)
ROLLOUT = "valuesim_rollout"
METHODS = ("logprobs", "samples", "point")

_refused: set[tuple[str, str | None]] = set()  # LMs (model, api_base) that refused a logprobs request
_refused_lock = threading.Lock()


def _key(lm: Any) -> tuple[str, str | None]:
    return str(getattr(lm, "model", "")), (getattr(lm, "kwargs", None) or {}).get("api_base")


def _asks_logprobs(lm: Any) -> bool:
    """Whether to ask this LM for logprobs: not the dry-run LM (it has none), not one that refused them."""
    from valuesim.lm.dummy import DUMMY

    if lm is None or getattr(lm, "model", None) == DUMMY:
        return False
    with _refused_lock:
        return _key(lm) not in _refused


def refused(error: BaseException) -> bool:
    """Whether an LM error may be the server refusing the logprobs parameter: a 400 (invalid request, not a full
    context window), an unsupported feature, or any error naming logprobs (llama-cpp-python's server started
    without logits_all answers 500 "logprobs is not supported ..."). Rate limits and timeouts are not."""
    from dspy.utils.exceptions import ContextWindowExceededError, LMInvalidRequestError, LMUnsupportedFeatureError

    if isinstance(error, ContextWindowExceededError):
        return False
    return isinstance(error, LMInvalidRequestError | LMUnsupportedFeatureError) or "logprob" in str(error).lower()


def ask(predictor: dspy.Predict, **kwargs: Any) -> tuple[dspy.Prediction, dict | None]:
    """Call `predictor(**kwargs)` asking for logprobs; returns its prediction (without the raw logprobs) and the
    probabilities of `kwargs["options"]`, None when the LM gave none."""
    options = kwargs["options"]
    lm = predictor.lm or dspy.settings.lm
    config = dict(kwargs.pop("config", None) or {})
    rollout = getattr(dspy.settings, ROLLOUT, None)
    if rollout is not None:  # rollout_id keys DSPy's cache apart; the seed makes the engine draw differently
        config |= {"rollout_id": rollout, "temperature": SAMPLE_TEMPERATURE, "seed": rollout}
    if not _asks_logprobs(lm):
        return predictor(config=config, **kwargs), None
    try:
        pred = predictor(config=config | logprobs.request(lm), **kwargs)
    except Exception as e:
        if not refused(e):
            raise
        pred = predictor(config=config, **kwargs)  # fails as before when the parameter was not the cause
        with _refused_lock:
            _refused.add(_key(lm))
        return pred, None
    raw = pred.get("logprobs")
    if "logprobs" in pred:
        del pred["logprobs"]  # a few kB per call: not kept in traces, demos or saved programs
    probs = logprobs.code_probs(raw, list(options), pred.answer) if raw else None
    return pred, probs


def finish(answer: str, options: dict[str, str], probs: dict | None) -> dict[str, Any]:
    """The prediction fields `answer`, `probs`, `probs_method`: logprobs when given, else a point mass."""
    if probs is None:
        return {"answer": answer, "probs": logprobs.point(list(options), answer), "probs_method": "point"}
    return {"answer": logprobs.answer_of(probs, answer), "probs": probs, "probs_method": "logprobs"}


def settle(pred: dspy.Prediction, options: dict[str, str], probs: dict | None) -> dspy.Prediction:
    """`finish` written onto a predictor's own Prediction (so whatever DSPy attached to it stays)."""
    for key, value in finish(pred.answer, options, probs).items():
        pred[key] = value
    return pred


def sampled(run: Callable[[], dspy.Prediction], pred: dspy.Prediction, options: dict[str, str], k: int) -> None:
    """With no logprobs (`pred.probs_method == "point"`) and k > 0: run the program k more times at temperature
    1, rollouts 1..k, and put the answers' shares (method `samples`) on `pred`."""
    if k <= 0 or pred.get("probs_method") != "point":
        return
    answers = []
    for rollout in range(1, k + 1):
        with dspy.context(**{ROLLOUT: rollout}):
            answers.append(run().answer)
    probs = logprobs.shares(answers, list(options))
    pred["probs"], pred["probs_method"] = probs, "samples"
    pred["answer"] = logprobs.answer_of(probs, pred.answer)
