"""The embedded llama.cpp engine behind `build_lm("gemma")` (valuesim/lm/__init__.py builds it).

DSPy's engine protocol (dspy.clients.engines.base): `dspy.LM(model, engine=obj)` hands `obj.complete(request)` one
`dspy.lm15.Request` (messages, system, `config` with max_tokens / temperature / response_format) and expects one
`dspy.lm15.Response` back (assistant message, finish_reason, `Usage`). DSPy keeps caching, retries, history and usage
tracking itself. Adapters read capability hints from the engine object (`supports_response_schema`,
`supported_params`): without them JSONAdapter never sends a schema.

llama-cpp-python does the rest as it ships: the chat template, the JSON-schema grammar (`create_chat_completion(
response_format={"type": "json_object", "schema": ...})`), reuse of the prefix shared with the previous prompt, a
RAM cache of saved KV states (`LlamaRAMCache`), and llama.cpp's token counters (`llama_perf_context`).
"""

from __future__ import annotations

import asyncio
import atexit
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dspy.lm15 import (
    ContextLengthError,
    Message,
    Request,
    Response,
    TokenLogprob,
    TopLogprob,
    UnsupportedFeatureError,
    Usage,
    response_to_events,
)

from valuesim.errors import ValueSimError

DEFAULT_N_CTX = 8192  # a full profile (232 answers + demographics) is about 5,000 tokens
DEFAULT_MAX_TOKENS = 512
DEFAULT_SEED = 0
# What a call may reuse of earlier prompts' KV cache: "off" evaluates every prompt whole (the naive cost);
# "last" is llama.cpp's own reuse of the prefix shared with the previous prompt; "ram" also restores saved states
# of earlier prompts (llama_cpp.LlamaRAMCache), so the three CAPS modules, which alternate, each find their own
# instructions + backstory prefix again on the person's next question.
PREFIX_CACHES = ("off", "last", "ram")

# Gemma GGUFs converted from the *base* checkpoint carry no chat template, and llama_cpp's fallbacks either use the
# Llama-2 format or drop system messages (its "gemma" format), which would lose DSPy's instructions. This is Gemma 3's
# own template (text only): the system message is folded into the first user turn.
_GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def bound_strings(schema: dict, max_tokens: int) -> dict:
    """Give every free-text property a maxLength that fits the token budget.

    A grammar lets a string run until max_tokens, and a JSON object cut there cannot be parsed; with the bound the
    grammar closes the object in time. Budget: (max_tokens - JSON overhead) shared by the free strings, at 2
    characters per token (English averages about 4, so only a degenerate output could still overflow).
    """
    props = schema.get("properties", {})
    free = [k for k, p in props.items() if p.get("type") == "string" and "enum" not in p and "maxLength" not in p]
    if not free:
        return schema
    overhead = 8 + 12 * len(props)
    per_field = max(16, 2 * (max_tokens - overhead) // len(free))
    return {**schema, "properties": {k: {**p, "maxLength": per_field} if k in free else p for k, p in props.items()}}


def _response_format(fmt: dict | None, max_tokens: int) -> dict | None:
    """DSPy's response_format -> llama_cpp's (`json_object` with the schema, its strings bounded to max_tokens)."""
    if fmt is None or fmt.get("type") not in ("json_schema", "json_object"):
        return None
    schema = fmt.get("schema")
    # No sort_keys anywhere: property order is the order the model writes fields in (reasoning before answer).
    return {"type": "json_object", **({"schema": bound_strings(schema, max_tokens)} if schema else {})}


def _prefix_cache(capacity_bytes: int) -> Any:
    """llama_cpp's LlamaRAMCache, keeping one row of each saved state's logits.

    Subclassed because no setting does it: `Llama.save_state` copies up to n_batch x vocabulary logits (512 x 262k
    floats for Gemma: 0.5 GB) that the cache does not count against its capacity (a run was OOM-killed at 23.6 GB);
    with logits_all=False nothing reads them but `load_state`, which broadcasts a single row over the rest.
    """
    from llama_cpp import LlamaRAMCache

    class PrefixCache(LlamaRAMCache):
        def __setitem__(self, key: Any, value: Any) -> None:
            value.scores = value.scores[-1:].copy()
            super().__setitem__(key, value)

    return PrefixCache(capacity_bytes=capacity_bytes)


class _LoadedModel:
    """One llama.cpp model per (file, settings) in the process, with the lock that serialises its use.

    llama.cpp contexts are not thread-safe, and dspy.Parallel / Evaluate call from threads.
    """

    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self.llm = llm
        self.lock = threading.Lock()
        self.ram_cache: Any = None  # made on the first "ram" call, then shared by every engine on this model
        self.pieces: dict[int, tuple[str, tuple[int, ...]]] = {}  # token id -> (text, bytes), for logprobs
        # llama.cpp reports each counter as max(1, n); decode 2 tokens (counted as a prompt batch) and 1 token (as a
        # generated token) once, so both are truly >= 1 and differences between two readings are exact.
        for tokens in ([0, 0], [0]):
            llm.eval(tokens)
            llama_cpp.llama_synchronize(llm.ctx)  # llama.cpp counts queued tokens when it synchronises
        llm.reset()

    def decoded(self) -> tuple[int, float]:
        """Tokens llama.cpp has decoded in this context so far, and the seconds spent on prompt batches."""
        import llama_cpp

        data = llama_cpp.llama_perf_context(self.llm.ctx)
        return data.n_p_eval + data.n_eval, data.t_p_eval_ms / 1000


_loaded: dict[tuple, _LoadedModel] = {}
_load_lock = threading.Lock()


def _load(path: Path, n_ctx: int, n_threads: int, seed: int) -> _LoadedModel:
    key = (str(path), n_ctx, n_threads, seed)
    with _load_lock:
        if key not in _loaded:
            try:
                from llama_cpp import Llama
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter
            except ImportError:
                raise ValueSimError(
                    "Embedded models need llama-cpp-python: pip install llama-cpp-python==0.3.36."
                ) from None
            llm = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                seed=seed,
                verbose=False,
            )
            metadata = llm.metadata or {}
            if "tokenizer.chat_template" not in metadata and metadata.get("general.architecture", "").startswith(
                "gemma"
            ):
                # Set after loading because only the loaded model's metadata shows the template is missing; this is
                # the attribute Llama(chat_handler=...) sets.
                llm.chat_handler = Jinja2ChatFormatter(
                    template=_GEMMA_TEMPLATE, eos_token="<end_of_turn>", bos_token="<bos>"
                ).to_chat_handler()
            _loaded[key] = _LoadedModel(llm)
            # Freed before interpreter shutdown: Llama.__del__ at teardown finds llama_cpp's globals gone and
            # prints a TypeError traceback after every embedded run.
            atexit.register(llm.close)
        return _loaded[key]


@dataclass
class EngineStats:
    """Token and time counters of one engine instance (cache hits in DSPy never reach the engine)."""

    calls: int = 0
    prompt_tokens_total: int = 0
    prompt_tokens_evaluated: int = 0  # prompt tokens decoded, i.e. not reused from the KV cache
    completion_tokens: int = 0
    prompt_seconds: float = 0.0
    seconds: float = 0.0

    def reset(self) -> None:
        for name, value in asdict(EngineStats()).items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class LlamaCppEngine:
    """DSPy 3.4 engine (`complete(Request) -> Response`) running a GGUF model in-process with llama.cpp.

    Honours `response_format` (a JSON schema becomes llama.cpp's grammar, its free strings bounded so the object
    closes within max_tokens), reports usage, and counts tokens in `stats`. The model loads on first call, once per
    process.
    """

    # Capability hints DSPy reads from a custom engine (dspy.clients.capabilities): they make JSONAdapter send
    # the signature's JSON schema as response_format.
    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset(
        {"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "response_format", "logprobs", "top_logprobs"}
    )

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int = 2,
        seed: int = DEFAULT_SEED,
        temperature: float = 0.0,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        prefix_cache: str = "ram",
        prefix_cache_mb: int = 1024,
    ) -> None:
        if prefix_cache not in PREFIX_CACHES:
            raise ValueSimError(f"prefix_cache must be one of {', '.join(PREFIX_CACHES)}, not {prefix_cache!r}")
        self.prefix_cache = prefix_cache
        self.prefix_cache_mb = prefix_cache_mb
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.stats = EngineStats()
        self.last_response_format: dict | None = None  # what the latest call was constrained by (for checks/tests)

    def __repr__(self) -> str:
        return f"LlamaCppEngine({self.model_path.name!r}, n_ctx={self.n_ctx})"

    # An engine is borrowed by the LMs that use it: copies of a program share it (and its loaded model and stats).
    def __deepcopy__(self, memo: dict) -> LlamaCppEngine:
        return self

    @property
    def loaded(self) -> _LoadedModel:
        return _load(self.model_path, self.n_ctx, self.n_threads, self.seed)

    def complete(self, request: Request) -> Response:
        from dspy.clients.engines.base import validate_request

        validate_request(request)
        if request.tools:
            raise UnsupportedFeatureError("LlamaCppEngine does not support tools", feature="tools")
        config = request.config
        max_tokens = config.max_tokens or self.max_tokens
        loaded = self.loaded
        llm = loaded.llm
        with loaded.lock:
            start = time.perf_counter()
            self._use_prefix_cache(loaded)
            decoded, prompt_seconds = loaded.decoded()
            steps = _Steps(config.logprobs) if config.logprobs is not None else None
            try:
                result = llm.create_chat_completion(
                    messages=_chat_messages(request),
                    temperature=self.temperature if config.temperature is None else config.temperature,
                    top_p=1.0 if config.top_p is None else config.top_p,
                    top_k=40 if config.top_k is None else config.top_k,
                    stop=list(config.stop) or None,
                    seed=self.seed if config.seed is None else config.seed,
                    max_tokens=max_tokens,
                    response_format=_response_format(config.response_format, max_tokens),
                    logits_processor=None if steps is None else [steps],
                )
            except ValueError as exc:
                if "exceed context window" in str(exc):
                    raise ContextLengthError(f"{exc} (n_ctx={self.n_ctx}, model {self.model_path.name})") from exc
                raise
            usage = result["usage"]
            prompt_tokens, completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
            # Every generated token but the last is decoded to extend the context (llm.n_tokens past the prompt);
            # whatever else llama.cpp decoded in this call is the part of the prompt it could not reuse.
            now_decoded, now_seconds = loaded.decoded()
            evaluated = now_decoded - decoded - (llm.n_tokens - prompt_tokens)
            stats = self.stats
            stats.calls += 1
            stats.prompt_tokens_total += prompt_tokens
            stats.prompt_tokens_evaluated += evaluated
            stats.completion_tokens += completion_tokens
            stats.prompt_seconds += now_seconds - prompt_seconds
            stats.seconds += time.perf_counter() - start
            self.last_response_format = config.response_format
            token_logprobs = (
                None if steps is None else steps.token_logprobs(loaded, prompt_tokens, choices(config.response_format))
            )
        choice = result["choices"][0]
        return Response(
            id=result.get("id"),
            model=request.model,
            message=Message.assistant(choice["message"].get("content") or ""),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            # cache_read_tokens follows OpenAI's convention (input_tokens includes them); DSPy shows it as
            # usage["prompt_tokens_details"]["cached_tokens"].
            usage=Usage(
                input_tokens=prompt_tokens,
                output_tokens=completion_tokens,
                cache_read_tokens=prompt_tokens - evaluated,
            ),
            logprobs=token_logprobs,
        )

    def stream(self, request: Request) -> Iterator[Any]:
        # No token streaming: DSPy's streaming listeners still work on the whole answer.
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Nothing to release per LM: the model stays loaded for the process (other LMs may share it)."""

    def dump_state(self) -> dict[str, Any]:
        return {
            "model_path": str(self.model_path),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "seed": self.seed,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "prefix_cache": self.prefix_cache,
            "prefix_cache_mb": self.prefix_cache_mb,
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaCppEngine:
        state = dict(state)
        return cls(state.pop("model_path"), **state)

    def _use_prefix_cache(self, loaded: _LoadedModel) -> None:
        """How much of earlier prompts a call may reuse (see PREFIX_CACHES)."""
        if self.prefix_cache == "ram":
            if loaded.ram_cache is None:
                loaded.ram_cache = _prefix_cache(self.prefix_cache_mb << 20)
            loaded.llm.set_cache(loaded.ram_cache)
            return
        loaded.llm.set_cache(None)
        if self.prefix_cache == "off":
            loaded.llm.reset()  # forget the previous prompt: the whole prompt is evaluated


def choices(fmt: dict | None) -> tuple[str, ...]:
    """The response schema's properties that choose among fixed strings (a string `enum`: the answer code)."""
    schema = (fmt or {}).get("schema") or {}
    props = schema.get("properties") or {}
    return tuple(name for name, p in props.items() if isinstance(p, dict) and isinstance(p.get("enum"), list))


def _choice_spans(text: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Character spans of the chosen values of `names` in a JSON text, each with its closing quote."""
    spans = []
    for name in names:
        for m in re.finditer(rf'"{re.escape(name)}"\s*:\s*"', text):
            end = text.find('"', m.end())
            spans.append((m.end(), len(text) if end < 0 else end + 1))
    return spans


class _Steps:
    """llama_cpp logits processor recording each generated token's log-probabilities (`logprobs` requests).

    llama-cpp-python returns logprobs only from a model built with logits_all=True, which keeps n_ctx x vocabulary
    floats (8.6 GB for Gemma at n_ctx 8192) and computes the output layer for every prompt token. A logits
    processor instead sees each step's logits as the model gives them: it is the first stage of llama.cpp's sampler
    chain, before the repetition penalties and the JSON grammar, so these are the model's own probabilities over
    the whole vocabulary, as OpenAI-compatible servers report them. It returns the logits unchanged.

    Every token gets its own logprob; the `top` alternatives are given only at the tokens that write the value of
    a schema property choosing among fixed strings (the answer code and its closing quote). There they are what
    the probabilities of the options are read from; on every token (a 48-token analysis at k=100) they made each
    cached response ~360 kB.
    """

    def __init__(self, top: int) -> None:
        self.top = max(int(top), 1)
        self.rows: list[tuple[int, np.ndarray, np.ndarray]] = []  # (tokens in the context, top ids, their logprobs)
        self.chosen: dict[int, float] = {}  # context length -> logprob of the token chosen there
        self._last: np.ndarray | None = None  # the previous step's log-softmax, until its chosen token is known

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if self._last is not None and len(input_ids):  # the previous step chose the token just appended
            self.chosen[len(input_ids) - 1] = float(self._last[int(input_ids[-1])])
        x = np.asarray(logits, dtype=np.float64)
        logprobs = x - x.max()
        logprobs -= np.log(np.exp(logprobs).sum())
        best = np.argpartition(-logprobs, min(self.top, len(logprobs) - 1))[: self.top]
        best = best[np.argsort(-logprobs[best], kind="stable")]
        self.rows.append((len(input_ids), best, logprobs[best]))
        self._last = logprobs
        return logits

    def token_logprobs(
        self, loaded: _LoadedModel, prompt_tokens: int, names: tuple[str, ...]
    ) -> tuple[TokenLogprob, ...]:
        """One TokenLogprob per generated token, in OpenAI's shape, alternatives at the `names` values' tokens.

        A step that saw n tokens chose the token at position n of llm.input_ids. The last step (the end-of-text
        token the grammar forces after the closing brace) is never added to the context, so it has no chosen token
        to report and is left out."""
        llm, pieces = loaded.llm, loaded.pieces

        def piece(token: int) -> tuple[str, tuple[int, ...]]:
            if token not in pieces:
                raw = llm.detokenize([token], special=True)
                pieces[token] = raw.decode("utf-8", errors="replace"), tuple(raw)
            return pieces[token]

        steps = [
            (seen, ids, values) for seen, ids, values in self.rows if seen in self.chosen and seen >= prompt_tokens
        ]
        tokens = [int(llm.input_ids[seen]) for seen, _, _ in steps]
        texts = [piece(t)[0] for t in tokens]
        spans = _choice_spans("".join(texts), names)
        out, at = [], 0
        for (seen, ids, values), token, text in zip(steps, tokens, texts, strict=True):
            begin, at = at, at + len(text)
            top: tuple[TopLogprob, ...] = ()
            if any(begin < end and at > start for start, end in spans):
                top = tuple(
                    TopLogprob(token=t, logprob=float(v), bytes=b, token_id=int(i))
                    for i, v in zip(ids, values, strict=True)
                    for t, b in [piece(int(i))]
                )
            out.append(
                TokenLogprob(token=text, logprob=self.chosen[seen], bytes=piece(token)[1], token_id=token, top=top)
            )
        return tuple(out)


class AsyncLlamaCppEngine:
    """Async face of a LlamaCppEngine (DSPy's acall path needs one): runs the sync engine in a worker thread."""

    def __init__(self, engine: LlamaCppEngine) -> None:
        self.engine = engine

    def __deepcopy__(self, memo: dict) -> AsyncLlamaCppEngine:
        return self

    async def complete(self, request: Request) -> Response:
        return await asyncio.to_thread(self.engine.complete, request)

    async def stream(self, request: Request) -> Any:
        for event in response_to_events(await self.complete(request)):
            yield event

    async def aclose(self) -> None:
        pass

    def dump_state(self) -> dict[str, Any]:
        return self.engine.dump_state()

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> AsyncLlamaCppEngine:
        return cls(LlamaCppEngine.load_state(state))


def _chat_messages(request: Request) -> list[dict[str, str]]:
    """lm15 Request -> OpenAI-style text messages for llama_cpp's chat templates."""
    out: list[dict[str, str]] = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        out.append({"role": "system", "content": system})
    for index, message in enumerate(request.messages):
        text = message.text
        if text is None or message.role == "tool":
            raise UnsupportedFeatureError(
                "LlamaCppEngine takes text-only user/assistant messages", feature=f"messages[{index}]"
            )
        role = "system" if message.role == "developer" else message.role
        # Merge same-role neighbours: strict templates (Gemma's) require alternating user/assistant turns.
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": role, "content": text})
    return out
