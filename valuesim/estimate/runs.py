"""Cost before a run: LM calls, prompt tokens, a completion bound and dollars, from the prompts the run would send
(an evaluate or bench here; a compile in estimate_compile.py), and, after it, beside what the run recorded.

The program runs on the run's own examples with `RenderingAdapter`, which formats every call exactly as the run's
adapter would (OptionsAdapter: instructions, demos, inputs), records it and answers without an LM. Prompts are
then counted with LiteLLM's `token_counter` for the run's model and priced from LiteLLM's price table.

What is exact and what is a bound:
- a program whose prompts depend only on the example (demographics, full-info, rag) is rendered exactly;
- later prompts of a multi-step program quote earlier outputs (the backstory, the three views): those outputs are
  stood in by filler of their full `max_tokens`, so those prompts are upper bounds;
- the three views always disagree here (answers cycle through the options), so ValueSim's coordinator is always
  counted: its calls are an upper bound too;
- completion tokens are bounded by calls x max_tokens;
- prompts are priced uncached: a provider's prompt cache (which ValueSim's prompt order is laid out for) only
  lowers the bill, and DSPy's own LM cache makes repeated calls free.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import typing
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import dspy
from dspy.utils.dummies import DummyLM

from valuesim.errors import ValueSimError
from valuesim.programs.options import OptionsAdapter

if TYPE_CHECKING:
    from valuesim.data.benchmark import Benchmark

FILLER = "word"  # one token per word in tiktoken's and most BPE vocabularies: n words stand in for n tokens
MILLION = 1_000_000


@dataclass
class RenderedCall:
    module: str  # the predictor's name in the program (story.write, cognitive, ...)
    messages: list[dict]
    max_tokens: int
    inputs: dict = field(repr=False)
    outputs: dict = field(repr=False)


def bounded_outputs(signature: type[dspy.Signature], max_tokens: int, n: int) -> dict:
    """Outputs that bound what later prompts quote: free text fills its whole token budget; an answer restricted to
    option codes takes the n-th code (consecutive calls disagree, so a coordinator is always reached)."""
    out = {}
    for name, info in signature.output_fields.items():
        codes = typing.get_args(info.annotation) if typing.get_origin(info.annotation) is typing.Literal else ()
        if codes:
            out[name] = codes[n % len(codes)]
        elif info.annotation is str:
            out[name] = " ".join([FILLER] * max_tokens)
        else:
            raise ValueSimError(f"estimate: cannot bound output field {name!r} of type {info.annotation}")
    return out


class RenderingAdapter(OptionsAdapter):
    """Formats and records each call as the run would send it, and returns bounded outputs instead of calling."""

    def __init__(self, names: dict[int, str], default_max_tokens: int):
        super().__init__()
        self.names = names  # id(predictor) -> its name in the program
        self.default_max_tokens = default_max_tokens
        self.calls: list[RenderedCall] = []
        self._lock = threading.Lock()  # dspy.Parallel (ValueSim's parallel=True) formats from threads

    def __call__(
        self,
        lm: dspy.BaseLM,
        lm_kwargs: dict[str, Any],
        signature: type[dspy.Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        # private: DSPy's pre-format step (tools, native response types), which its __call__ runs before format();
        # no public API renders a call without calling an LM (pinned by tests/test_private_apis.py)
        processed = self._call_preprocess(lm, lm_kwargs, signature, inputs)
        messages = self.format(processed, demos, inputs)
        max_tokens = int(lm_kwargs.get("max_tokens") or self.default_max_tokens)
        caller = (dspy.settings.caller_modules or [None])[-1]  # the Predict being called
        with self._lock:
            outputs = bounded_outputs(signature, max_tokens, len(self.calls))
            self.calls.append(RenderedCall(self.names.get(id(caller), "?"), messages, max_tokens, inputs, outputs))
        return [outputs]

    async def acall(
        self,
        lm: dspy.BaseLM,
        lm_kwargs: dict[str, Any],
        signature: type[dspy.Signature],
        demos: list[dict[str, Any]],
        inputs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        return self(lm, lm_kwargs, signature, demos, inputs)


def render(program: dspy.Module, examples: Iterable[dspy.Example], max_tokens: int | None = None) -> list[RenderedCall]:
    """Every LM call `program` makes on `examples`, in order, formatted but not sent. `max_tokens` is the LM's
    default for calls that set none (valuesim.lm.DEFAULT_MAX_TOKENS, what `build_lm` gives every run)."""
    from valuesim.lm import DEFAULT_MAX_TOKENS

    adapter = RenderingAdapter(
        {id(p): name for name, p in program.named_predictors()}, max_tokens or DEFAULT_MAX_TOKENS
    )
    with dspy.context(lm=DummyLM([]), adapter=adapter):  # the stand-in LM is never called
        for ex in examples:
            program(**ex.inputs())
    return adapter.calls


# --------------------------------------------------------------------------------------------------------------------
# Tokens and prices


def _litellm() -> ModuleType:
    import litellm

    return litellm


class Counter:
    """Prompt tokens of rendered messages: LiteLLM's `token_counter` for the model (the model's own tokenizer
    where LiteLLM has one, tiktoken otherwise), or, with `tokenize_url`, the tokenizer of a llama-cpp-python
    server (its /extras/tokenize/count) on the messages in ChatML (exact for ChatML models such as SmolLM2 and
    Qwen; other chat templates differ by a few tokens per message)."""

    def __init__(self, model: str, tokenize_url: str | None = None):
        self.model = model
        self.tokenize_url = tokenize_url
        self._cache: dict[str, int] = {}

    def describe(self) -> str:
        if self.tokenize_url:
            return f"the server's tokenizer ({self.tokenize_url}), ChatML template"
        tok = _litellm().utils.select_tokenizer(self.model)
        if tok["type"] == "openai_tokenizer":
            return f"tiktoken {tok['tokenizer'].name} (LiteLLM's fallback for {self.model})"
        return f"{self.model}'s own tokenizer (through LiteLLM)"

    def __call__(self, messages: list[dict]) -> int:
        key = json.dumps(messages, sort_keys=True)
        if key not in self._cache:
            self._cache[key] = self._count(messages)
        return self._cache[key]

    def _count(self, messages: list[dict]) -> int:
        if not self.tokenize_url:
            return int(_litellm().token_counter(model=self.model, messages=messages))
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        body = json.dumps({"input": text + "<|im_start|>assistant\n"}).encode()
        req = urllib.request.Request(self.tokenize_url, body, {"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return int(json.load(r)["count"])
        except (OSError, KeyError, ValueError) as e:
            raise ValueSimError(f"--tokenize-url {self.tokenize_url}: no token count ({e})") from None


def price(model: str) -> dict:
    """Dollars per million prompt / completion / cached prompt tokens from LiteLLM's price table, or why not."""
    from valuesim.lm import is_embedded

    if is_embedded(model):
        return {"known": False, "reason": f"{model} runs in-process: no per-token price"}
    litellm = _litellm()
    try:
        info = litellm.get_model_info(model)
    except Exception:  # noqa: BLE001 - LiteLLM raises a plain Exception for unmapped models
        info = None
    if not info or info.get("input_cost_per_token") is None:
        return {
            "known": False,
            "reason": f"{model} is not in LiteLLM's price table (a self-hosted model has no per-token price)",
        }
    per_m = {
        "input": info["input_cost_per_token"] * MILLION,
        "output": (info.get("output_cost_per_token") or 0.0) * MILLION,
    }
    if info.get("cache_read_input_token_cost") is not None:
        per_m["cached_input"] = info["cache_read_input_token_cost"] * MILLION
    return {"known": True, "usd_per_million": per_m, "source": "LiteLLM model_cost (shipped table)"}


def dollars(p: dict, prompt_tokens: float, completion_tokens: float, cached_tokens: float = 0) -> float | None:
    if not p["known"]:
        return None
    rates = p["usd_per_million"]
    cached_rate = rates.get("cached_input", rates["input"])
    return ((prompt_tokens - cached_tokens) * rates["input"] + cached_tokens * cached_rate
            + completion_tokens * rates["output"]) / MILLION  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Estimates


def tally(calls: list[RenderedCall], count: Counter) -> dict:
    """Calls, prompt tokens and the completion bound, in total and per module."""
    modules: dict[str, dict] = {}
    for c in calls:
        m = modules.setdefault(c.module, {"lm_calls": 0, "prompt_tokens": 0, "completion_tokens_max": 0})
        m["lm_calls"] += 1
        m["prompt_tokens"] += count(c.messages)
        m["completion_tokens_max"] += c.max_tokens
    total = {k: sum(m[k] for m in modules.values()) for k in ("lm_calls", "prompt_tokens", "completion_tokens_max")}
    return total | {"modules": modules}


def is_bound(calls: list[RenderedCall]) -> bool:
    """Whether some prompt quotes an earlier output (then its tokens and the coordinator's calls are bounds)."""
    return any(FILLER + " " + FILLER in json.dumps(c.messages) for c in calls)


def estimate_program(
    program: dspy.Module, examples: list[dspy.Example], count: Counter, p: dict, max_tokens: int | None = None
) -> dict:
    """One program on one selection: calls, tokens, dollars (an upper bound: completions at their max_tokens)."""
    calls = render(program, examples, max_tokens)
    t = tally(calls, count)
    return {
        "examples": len(examples),
        "persons": len({ex.person_id for ex in examples}),
        **t,
        "prompt_tokens_are_bound": is_bound(calls),
        "usd_max": dollars(p, t["prompt_tokens"], t["completion_tokens_max"]),
    }


def estimate(
    bench: Benchmark,
    programs: list[str],
    model: str,
    protocol: str = "values",
    split: str = "dev",
    folds: Iterable[int] = (1,),
    histories: Iterable[int] = (232,),
    persons: int | None = None,
    questions: int | None = None,
    seed: int = 0,
    settings: dict | None = None,
    tokenize_url: str | None = None,
) -> dict:
    """What `evaluate` (one program, fold and history) or `bench` (all of them) would cost on `model`, before
    any LM call. Programs that need no LM cost nothing. Returns one JSON-able dict: per program x fold x history
    the calls, prompt tokens, completion bound and dollars, and their totals."""
    from valuesim.programs import needs_lm
    from valuesim.run.runner import build_program

    count = Counter(model, tokenize_url)
    p = price(model)
    rows: list[dict[str, Any]] = []  # JSON-able: counts, dollars (None without a price), per-module tallies
    for fold in folds:
        for history in histories:
            examples = None
            for name in programs:
                if not needs_lm(name):
                    rows.append({"program": name, "fold": fold, "history": history, "lm_calls": 0, "prompt_tokens": 0,
                                 "completion_tokens_max": 0, "usd_max": 0.0, "modules": {}})  # fmt: skip
                    continue
                if examples is None:
                    examples = bench.examples(protocol, split, fold, history, persons, questions, seed)
                    if not examples:
                        raise ValueSimError("no examples selected (check --split, --fold, --persons)")
                program, _, _ = build_program(name, bench, settings or {})
                rows.append({"program": name, "fold": fold, "history": history,
                             **estimate_program(program, examples, count, p)})  # fmt: skip
    keys = ("lm_calls", "prompt_tokens", "completion_tokens_max")
    totals: dict[str, Any] = {k: sum(r[k] for r in rows) for k in keys}  # counts, then dollars or None
    totals["usd_max"] = dollars(p, totals["prompt_tokens"], totals["completion_tokens_max"])
    return {"lm": model, "tokenizer": count.describe(), "price": p, "programs": rows, "total": totals}


# --------------------------------------------------------------------------------------------------------------------
# Estimate against what a run recorded


def recorded(store: Path) -> dict:
    """What a finished run's store recorded: predictions, LM calls, tokens (cached ones apart) and dollars (None
    when a call had no price). Opened read-only: comparing never changes a run."""
    import pandas as pd

    from valuesim.score.results import dollars_of

    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            frame = pd.read_sql_query("SELECT * FROM predictions", db)
    except (sqlite3.Error, pd.errors.DatabaseError) as e:
        raise ValueSimError(f"{store}: not a readable predictions store ({e})") from None
    return {
        "predictions": len(frame),
        "lm_calls": int(frame["lm_calls"].sum()),
        "prompt_tokens": int(frame["prompt_tokens"].sum()),
        "cached_tokens": int(frame["cached_tokens"].fillna(0).sum()) if "cached_tokens" in frame else 0,
        "completion_tokens": int(frame["completion_tokens"].sum()),
        "usd": dollars_of(frame),
    }


def compare(result: dict, folder: str | Path) -> dict:
    """Add to each row of an `estimate` what the run in `folder` recorded for it (`actual`): an evaluate run
    folder (matched by its run.json) or a bench folder (its <fold>-<history>-<program> cells)."""
    folder = Path(folder)
    single = folder / "predictions.sqlite"
    identity = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
    found = 0
    for row in result["programs"]:
        if single.exists():
            same = (identity.get("program"), identity.get("fold"), identity.get("history"))
            store = single if same == (row["program"], row["fold"], row["history"]) else None
        else:
            store = (
                folder / f"f{row['fold']}-h{row['history']}-{row['program'].replace('/', '_')}" / "predictions.sqlite"
            )
        if store is not None and store.exists():
            row["actual"] = recorded(store)
            found += 1
    if not found:
        raise ValueSimError(f"--actual {folder}: no run of these programs, folds and histories there")
    return result
