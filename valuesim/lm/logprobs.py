"""A probability for each option code, read from the log-probabilities an LM returned with its answer.

Every LM answer is a JSON object whose `answer` is one of the question's codes (programs/options.py constrains
it), so the code is written as a JSON string, `"answer": "<code>"`. The provider returns, for each generated token,
its log-probability and the `top_logprobs` most probable tokens at that step (OpenAI's `logprobs.content` shape;
DSPy hands it over as the prediction's `logprobs`). From them, `code_probs` computes the probability that decoding
restricted to the option codes writes each code:

- at the token where the code starts, the listed tokens that begin some option code (`"3`, `3"}` and such
  spellings included) are kept and renormalized; the rest (text, other numbers) is dropped, as the options
  grammar drops it;
- a code that takes several tokens (`10` as `1` + `0` in SmolLM2's vocabulary) gets the product: the first
  token's restricted probability times the next step's restricted probability of the rest, and so on. A code is
  over when its closing quote comes, so `1` and `10` split the probability of the token `1` by what the model
  puts next (the quote or `0`);
- the next step is known only along the path the model actually wrote. When it wrote `3`, the split of `1`
  between `1` and `10` was never computed: that token's probability is shared equally by the codes it leads to
  (documented in docs/reference.md, "Answer distributions");
- an option with no listed token at a step (outside the top-k) gets the floor: the smallest probability listed at
  that step, an upper bound on its true value (the list holds the k most probable tokens).

`None` when the response carries no logprobs or the answer cannot be found in them; the caller then falls back to
samples or a point mass.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

TOP_LOGPROBS = 20  # alternatives per token asked of a served model: OpenAI's and vLLM's maximum
# The embedded engine has no cap and lists alternatives at the answer's tokens only (valuesim/lm/engine.py): with
# 256, no option of the test questions was outside the list on SmolLM2; with 100 a 10-point scale lost one
TOP_LOGPROBS_EMBEDDED = 256
# What may follow a code's closing quote inside the same token: the end of the object or the next field
_AFTER_QUOTE = re.compile(r"[\s,}\]]*")
_ANSWER_KEY = re.compile(r'"answer"\s*:\s*"')


def request(lm: Any = None) -> dict[str, Any]:
    """The request parameters that ask `lm` for log-probabilities (DSPy passes them on as OpenAI's)."""
    from valuesim.lm import engine_of

    embedded = lm is not None and engine_of(lm) is not None
    return {"logprobs": True, "top_logprobs": TOP_LOGPROBS_EMBEDDED if embedded else TOP_LOGPROBS}


def _steps(logprobs: Any) -> list[tuple[str, list[tuple[str, float]]]] | None:
    """[(chosen token, [(alternative, probability), ...]), ...] from OpenAI's `{"content": [...]}` (or the list)."""
    if hasattr(logprobs, "model_dump"):  # LiteLLM hands over the OpenAI SDK's pydantic ChoiceLogprobs
        logprobs = logprobs.model_dump()
    content = logprobs.get("content") if isinstance(logprobs, Mapping) else logprobs
    if not isinstance(content, Sequence) or not content:
        return None
    steps = []
    for entry in content:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("token"), str):
            return None
        alternatives: dict[str, float] = {}
        for alt in entry.get("top_logprobs") or ():
            token, value = alt.get("token"), alt.get("logprob")
            if isinstance(token, str) and isinstance(value, int | float) and math.isfinite(value):
                # two vocabulary entries with the same text both write that text: their probabilities add up
                alternatives[token] = alternatives.get(token, 0.0) + math.exp(value)
        chosen = entry["token"]
        if chosen not in alternatives and isinstance(entry.get("logprob"), int | float):
            alternatives[chosen] = math.exp(entry["logprob"])
        steps.append((chosen, list(alternatives.items())))
    return steps


def _code_start(text: str, answer: str) -> int | None:
    """Character offset of the answer code in the generated JSON text (the last `"answer": "<answer>"`)."""
    starts = [m.end() for m in _ANSWER_KEY.finditer(text) if text.startswith(f'{answer}"', m.end())]
    return starts[-1] if starts else None


def _consistent(written: str, targets: Sequence[str]) -> list[str]:
    """The targets (code + closing quote) that `written` (code text so far) can still become or has completed."""
    out = []
    for target in targets:
        if target.startswith(written):
            out.append(target)
        elif written.startswith(target) and _AFTER_QUOTE.fullmatch(written[len(target) :]):
            out.append(target)
    return out


def code_probs(logprobs: Any, options: Sequence[str], answer: str) -> dict[str, float] | None:
    """{code: probability} over `options` (summing to 1), or None when the logprobs do not show the answer."""
    read = read_codes(logprobs, options, answer)
    return None if read is None else read[0]


def read_codes(logprobs: Any, options: Sequence[str], answer: str) -> tuple[dict[str, float], set[str]] | None:
    """`code_probs` and the options that got the floor somewhere on their way."""
    steps = _steps(logprobs)
    if steps is None:
        return None
    text = "".join(token for token, _ in steps)
    start = _code_start(text, str(answer))
    if start is None:
        return None
    ends = [0]
    for token, _ in steps:
        ends.append(ends[-1] + len(token))
    first = next(i for i in range(len(steps)) if ends[i + 1] > start)
    targets = [f"{code}" + '"' for code in options]
    mass = dict.fromkeys(targets, 0.0)
    floored: set[str] = set()
    _walk(steps, first, text[ends[first] : start], "", targets, 1.0, mass, floored)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {str(code): mass[f'{code}"'] / total for code in options}, {t[:-1] for t in floored}


def _walk(
    steps: list[tuple[str, list[tuple[str, float]]]],
    index: int,
    prefix: str,
    written: str,
    targets: list[str],
    weight: float,
    mass: dict[str, float],
    floored: set[str],
) -> None:
    """Spread `weight` (the probability of having written `written` of the code) over `targets` at step `index`.

    `prefix` is what the step's token writes before the code starts (a quote, at the first step only)."""
    if index >= len(steps):  # the text ended inside the code: share equally (cannot happen with a closed JSON)
        for target in targets:
            mass[target] += weight / len(targets)
        return
    chosen, alternatives = steps[index]
    branches: dict[str, float] = {}  # code text written after this step -> probability (not yet renormalized)
    for token, p in alternatives:
        if not token.startswith(prefix) or len(token) == len(prefix):
            continue
        after = written + token[len(prefix) :]
        if _consistent(after, targets):
            branches[after] = branches.get(after, 0.0) + p
    # an option none of whose spellings is listed here gets the floor: the smallest probability listed
    floor = min((p for _, p in alternatives), default=0.0)
    for target in targets:
        if not any(target in _consistent(after, targets) for after in branches):
            branches[target] = floor
            floored.add(target)
    total = sum(branches.values())
    if total <= 0:
        return
    path = written + chosen[len(prefix) :] if chosen.startswith(prefix) else None
    for after, p in branches.items():
        share = weight * p / total
        leads = _consistent(after, targets)
        done = [t for t in leads if after.startswith(t)]
        if done:  # the closing quote is written: one code, complete
            mass[done[0]] += share
        elif len(leads) == 1 and after not in targets:
            # one code left: the options grammar allows only its remaining tokens, whose restricted probability is 1
            mass[leads[0]] += share
        elif after == path:
            _walk(steps, index + 1, "", after, leads, share, mass, floored)
        else:  # a prefix of several codes the model did not write: their split is unknown, shared equally
            for target in leads:
                mass[target] += share / len(leads)


def answer_of(probs: Mapping[str, float], written: str | None = None) -> str:
    """The most probable code; on a tie the one the model wrote, else the first in option order."""
    best = max(probs.values())
    tied = [code for code, p in probs.items() if p >= best - 1e-12]
    return written if written in tied else tied[0]


def point(options: Sequence[str], answer: str) -> dict[str, float]:
    """All the probability on the answer (the method `point`)."""
    return {str(code): float(str(code) == str(answer)) for code in options}


def shares(answers: Sequence[str], options: Sequence[str]) -> dict[str, float]:
    """Each option's share of `answers` (the method `samples`)."""
    return {str(code): sum(str(a) == str(code) for a in answers) / len(answers) for code in options}
