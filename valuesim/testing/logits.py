"""For tests and scripts: an answer's option distribution recomputed from llama.cpp's own logits.

A second llama.cpp instance of the same GGUF with `logits_all=True` decodes the prompt and the answer's tokens as
the engine and llama-cpp-python's server do (the prompt in batches of n_batch, then one token at a time: a single
batch over prompt and answer gives logits that differ by up to ~0.6 in logprob on SmolLM2 Q4_1), and the option
codes' probabilities are a softmax of its logits at the code's position, following the rules of
valuesim/lm/logprobs.py over the whole vocabulary instead of the top-k.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_AFTER_QUOTE = re.compile(r"[\s,}\]]*")


def reference_llama(n_ctx: int = 4096) -> Any:
    """SmolLM2 with every position's logits kept."""
    from llama_cpp import Llama

    from valuesim.lm.check import smollm2_file

    return Llama(model_path=str(smollm2_file()), n_ctx=n_ctx, n_threads=2, logits_all=True, verbose=False)


def prompt_tokens(ref: Any, messages: list[dict]) -> list[int]:
    """The tokens llama-cpp-python's chat template makes of `messages` (what its server evaluates)."""
    ref.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
    return [int(t) for t in ref.input_ids[: ref.n_tokens]]


def token_ids(ref: Any, pieces: list[str]) -> list[int]:
    """The token id of each generated piece (a server reports token texts only); each must be one token."""
    ids = []
    for piece in pieces:
        found = ref.tokenize(piece.encode(), add_bos=False, special=True)
        if len(found) != 1:
            raise ValueError(f"{piece!r} is not one token: {found}")
        ids.append(int(found[0]))
    return ids


def reference_probs(ref: Any, prompt: list[int], generated: list[int], options: list[str]) -> dict[str, float]:
    """The codes' distribution from `ref`'s logits (SmolLM2 writes digits one per token).

    At the code's first token: a softmax over the option codes' first tokens. A code of two tokens on the written
    path: the first token's share times the softmax, at the next position, over its second token and the
    closing-quote tokens (a `"` followed only by `}`, `]`, `,` or whitespace); off the written path the first
    token's share is split equally by the codes it starts."""
    ref.reset()
    ref.eval(prompt)
    for token in generated:
        ref.eval([token])
    text = [ref.detokenize([t]).decode() for t in generated]
    start = next(i for i in range(len(text)) if "".join(text[:i]).endswith('"answer": "'))

    def softmax_at(position: int, ids: list[int]) -> np.ndarray:
        row = np.asarray(ref.scores[len(prompt) + position - 1], dtype=np.float64)[ids]
        return np.exp(row - row.max()) / np.exp(row - row.max()).sum()

    def one_token(s: str) -> int:
        (t,) = ref.tokenize(s.encode(), add_bos=False, special=False)
        return int(t)

    firsts = sorted({c[0] for c in options})
    q = dict(zip(firsts, softmax_at(start, [one_token(d) for d in firsts]), strict=True))
    probs = {c: float(q[c]) for c in options if len(c) == 1 and not any(o != c and o.startswith(c) for o in options)}
    for prefix in {c[0] for c in options if len(c) > 1}:
        longer = [c for c in options if len(c) > 1 and c.startswith(prefix)]
        if text[start] != prefix:  # not written: shared equally, as documented
            for c in [prefix, *longer]:
                probs[c] = float(q[prefix]) / (len(longer) + 1)
            continue
        vocab = [ref.detokenize([i]).decode(errors="replace") for i in range(ref.n_vocab())]
        closing = [i for i, s in enumerate(vocab) if s.startswith('"') and _AFTER_QUOTE.fullmatch(s[1:])]
        p = softmax_at(start + 1, [one_token(c[1]) for c in longer] + closing)
        for k, c in enumerate(longer):
            probs[c] = float(q[prefix] * p[k])
        probs[prefix] = float(q[prefix] * p[len(longer) :].sum())
    return probs
