"""valuesim.lm: model resolution and LiteLLM passthrough (no model needed), and the llama.cpp engine (marker llm)."""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Literal

import dspy
import pytest
from dspy.lm15 import Config, Message, Request

from valuesim import lm as vlm

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-model.Q4.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Unit tests: no model is loaded


def test_short_names_and_embedded_detection() -> None:
    assert set(vlm.MODELS) == {"gemma", "smollm2"}
    assert vlm.is_embedded("gemma") and vlm.is_embedded("smollm2")
    assert vlm.is_embedded("models/x.gguf")
    assert vlm.is_embedded("no-such-model")  # bare names are short names, so a typo fails loudly
    assert not vlm.is_embedded("openai/gpt-4o-mini")
    assert not vlm.is_embedded("ollama_chat/qwen3:0.6b")


def test_unknown_short_name_raises_clear_error() -> None:
    with pytest.raises(ValueError, match=r"Unknown model 'gemmma'.*gemma.*smollm2.*\.gguf"):
        vlm.build_lm("gemmma")


def test_missing_gguf_raises_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        vlm.build_lm(str(tmp_path / "missing.gguf"))


def test_api_base_is_refused_for_embedded_models() -> None:
    with pytest.raises(ValueError, match="api_base"):
        vlm.build_lm("smollm2", api_base="http://localhost:8080/v1")


def test_litellm_passthrough() -> None:
    lm = vlm.build_lm("openai/gpt-4o-mini", api_base="http://localhost:1234/v1", temperature=0.5, max_tokens=100)
    assert isinstance(lm, dspy.LM)
    assert lm.model == "openai/gpt-4o-mini"
    assert lm.kwargs["api_base"] == "http://localhost:1234/v1"
    assert lm.kwargs["temperature"] == 0.5 and lm.kwargs["max_tokens"] == 100
    assert vlm.engine_of(lm) is None
    info = vlm.lm_info(lm)
    assert info["engine"] == "litellm" and info["model"] == "openai/gpt-4o-mini"
    assert info["api_base"] == "http://localhost:1234/v1"


def test_litellm_without_api_base_sets_none() -> None:
    lm = vlm.build_lm("openai/gpt-4o-mini")
    assert "api_base" not in lm.kwargs


def test_gguf_path_builds_lazily_with_name_and_size_in_model(fake_gguf: Path) -> None:
    # The file is not a real model: building must not load it (loading happens on the first call).
    lm = vlm.build_lm(str(fake_gguf), max_tokens=8, n_ctx=512)
    assert lm.model == f"llamacpp/tiny-model.Q4@{fake_gguf.stat().st_size}"
    engine = vlm.engine_of(lm)
    assert isinstance(engine, vlm.LlamaCppEngine) and engine.n_ctx == 512 and engine.max_tokens == 8
    assert lm.supports_response_schema and "response_format" in lm.supported_params
    info = vlm.lm_info(lm)
    assert info["model_file"] == fake_gguf.name and info["model_size"] == fake_gguf.stat().st_size
    assert info["temperature"] == 0.0 and info["max_tokens"] == 8 and info["engine"] == "llama.cpp"


def test_engine_is_shared_by_copies_and_saves_its_state(fake_gguf: Path) -> None:
    lm = vlm.build_lm(str(fake_gguf))
    assert copy.deepcopy(lm).engine is lm.engine  # program deepcopies must not clone the model handle
    assert lm.copy(temperature=0.7).engine is lm.engine
    state = lm.dump_state()
    assert state["engine"]["class"] == "valuesim.lm.engine:LlamaCppEngine"
    assert vlm.LlamaCppEngine.load_state(state["engine"]["state"]).dump_state() == lm.engine.dump_state()
    # States saved while the engine lived in valuesim.lm, then in valuesim.engine, still load.
    for where in ("valuesim.lm", "valuesim.engine"):
        old = {**state, "engine": {**state["engine"], "class": f"{where}:LlamaCppEngine"}}
        assert dspy.LM.load_state(old, allow_custom_lm_class=True).engine.dump_state() == lm.engine.dump_state()


def test_engine_stats_reset() -> None:
    stats = vlm.EngineStats(calls=2, prompt_tokens_total=10, prompt_tokens_evaluated=5, completion_tokens=3)
    stats.reset()
    assert stats == vlm.EngineStats()


@pytest.mark.parametrize("dspy_first", [False, True])
def test_dspy_cache_goes_to_valuesim_home_when_an_lm_is_built(tmp_path: Path, dspy_first: bool) -> None:
    # A fresh interpreter: importing valuesim changes neither the environment nor DSPy's cache; building an LM
    # points the cache at VALUESIM_HOME, whether DSPy built its default cache before or not.
    prelude = "import dspy; dspy.cache; " if dspy_first else ""
    code = (
        prelude + "import os, valuesim, valuesim.lm, dspy, sys; "
        "print('DSPY_CACHEDIR' in os.environ, 'mlflow' in sys.modules); "
        "valuesim.lm.build_lm('openai/x'); print(dspy.cache.disk_cache_dir)"
    )
    env = {k: v for k, v in os.environ.items() if k != "DSPY_CACHEDIR"}
    env.update(VALUESIM_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    first, last = out.stdout.strip().splitlines()[-2:]
    assert first == "False False"
    assert last == str(tmp_path / ".cache" / "dspy_cache")


def test_import_valuesim_is_cheap() -> None:
    """`import valuesim` loads neither DSPy nor MLflow (seconds of imports) and sets no environment variable."""
    code = (
        "import os, sys; env = dict(os.environ); import valuesim; "
        "print(sorted(m for m in ('dspy', 'mlflow', 'litellm') if m in sys.modules), env == dict(os.environ), "
        "callable(valuesim.load))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[] True True"


# ---------------------------------------------------------------------------------------------------------------
# Embedded model tests (SmolLM2 135M; a few seconds each)


def _smollm2_available() -> bool:
    if importlib.util.find_spec("llama_cpp") is None:
        return False
    try:
        vlm.resolve_model("smollm2")
    except ValueError:
        return False
    return True


needs_smollm2 = pytest.mark.skipif(not _smollm2_available(), reason="llama_cpp or the smollm2 GGUF is not installed")


class Importance(dspy.Signature):
    """Answer the survey question with the number of the option that fits you."""

    question: str = dspy.InputField()
    answer: Literal["1", "2", "3", "4"] = dspy.OutputField()


QUESTION = (
    "How important is family in your life? "
    "1 = Very important, 2 = Rather important, 3 = Not very important, 4 = Not at all important"
)


@pytest.fixture(scope="module")
def smollm2() -> dspy.LM:
    return vlm.build_lm("smollm2", max_tokens=24, cache=False)


@pytest.mark.llm
@needs_smollm2
def test_json_adapter_sends_schema_and_answer_is_an_option(smollm2: dspy.LM) -> None:
    engine = vlm.engine_of(smollm2)
    engine.last_response_format = None
    with dspy.context(lm=smollm2, adapter=dspy.JSONAdapter()), dspy.track_usage() as tracker:
        pred = dspy.Predict(Importance)(question=QUESTION)
    assert pred.answer in {"1", "2", "3", "4"}
    fmt = engine.last_response_format
    assert fmt is not None and fmt["type"] == "json_schema"
    assert fmt["schema"]["properties"]["answer"]["enum"] == ["1", "2", "3", "4"]
    usage = tracker.get_total_tokens()[smollm2.model]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert smollm2.history[-1]["usage"]["prompt_tokens"] == usage["prompt_tokens"]


@pytest.mark.llm
@needs_smollm2
def test_async_call_uses_the_same_engine(smollm2: dspy.LM) -> None:
    with dspy.context(lm=smollm2, adapter=dspy.JSONAdapter()):
        pred = asyncio.run(dspy.Predict(Importance).acall(question=QUESTION))
    assert pred.answer in {"1", "2", "3", "4"}


@pytest.mark.llm
@needs_smollm2
def test_kv_prefix_reuse_evaluates_fewer_prompt_tokens(smollm2: dspy.LM) -> None:
    engine = vlm.engine_of(smollm2)
    # A unique long system prompt, so the first call cannot reuse anything past the template header.
    system = f"Session {uuid.uuid4()}. " + "You answer questions from a values survey as one respondent. " * 25

    def ask(question: str) -> tuple[int, int]:
        before = engine.stats.prompt_tokens_evaluated
        request = Request(
            model=smollm2.model,
            system=system,
            messages=(Message.user(question),),
            config=Config(max_tokens=4, temperature=0.0),
        )
        response = engine.complete(request)
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
        return response.usage.input_tokens, engine.stats.prompt_tokens_evaluated - before

    calls = engine.stats.calls
    total_1, evaluated_1 = ask("Is work important?")
    total_2, evaluated_2 = ask("Is leisure important?")
    assert engine.stats.calls == calls + 2
    assert evaluated_1 > 0.9 * total_1  # fresh prefix: (almost) all evaluated
    assert evaluated_2 < total_2 / 4  # shared prefix reused from the KV cache


@pytest.mark.llm
@needs_smollm2
def test_context_overflow_is_a_context_window_error() -> None:
    lm = vlm.build_lm("smollm2", n_ctx=128, max_tokens=4, cache=False)
    with pytest.raises(dspy.utils.exceptions.ContextWindowExceededError):
        lm("word " * 400)


@pytest.mark.llm
@needs_smollm2
def test_model_strings_differ_per_model_file() -> None:
    first, second = vlm.build_lm("smollm2"), vlm.build_lm("smollm2")
    assert first.model == second.model
    try:
        gemma = vlm.build_lm("gemma")
    except ValueError as exc:
        pytest.skip(str(exc))
    assert gemma.model != first.model
    assert gemma.model.startswith("llamacpp/gemma") and first.model.startswith("llamacpp/SmolLM2")


@pytest.mark.llm
@needs_smollm2
@pytest.mark.parametrize("mode", vlm.PREFIX_CACHES)
def test_evaluated_tokens_are_the_prompt_tokens_llama_cpp_decodes(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's count (llama.cpp's perf counters) equals the length of each call's first decode (the prompt
    tokens not reused), measured here by recording Llama.eval, on fresh, shared-prefix and repeated prompts."""
    lm = vlm.build_lm("smollm2", cache=False, prefix_cache=mode)
    engine = vlm.engine_of(lm)
    llm = engine.loaded.llm
    decodes: list[int] = []
    original_eval = llm.eval
    monkeypatch.setattr(llm, "eval", lambda tokens: (decodes.append(len(tokens)), original_eval(tokens))[1])
    system = f"Session {uuid.uuid4()}. " + "You answer questions from a values survey as one respondent. " * 25
    schema = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["1", "2"]}}}
    measured, counted = [], []
    # 1 then 4 tokens of the same prompt (llama.cpp samples the cached prompt at once), the same prompt after
    # generating (it re-decodes the last prompt token), another question (only its suffix), JSON-constrained.
    for question, max_tokens, fmt in [
        ("Is work important?", 1, None),
        ("Is work important?", 4, None),
        ("Is work important?", 1, None),
        ("Is leisure important?", 4, None),
        ("Is leisure important?", 8, {"type": "json_schema", "schema": schema}),
    ]:
        decodes.clear()
        before = engine.stats.prompt_tokens_evaluated
        config = Config(max_tokens=max_tokens, temperature=0.0, response_format=fmt)
        response = engine.complete(
            Request(model=lm.model, system=system, messages=(Message.user(question),), config=config)
        )
        counted.append(engine.stats.prompt_tokens_evaluated - before)
        measured.append(decodes[0])
        assert response.usage.cache_read_tokens == response.usage.input_tokens - counted[-1]
        if mode == "off":
            assert counted[-1] == response.usage.input_tokens
    assert counted == measured
    if mode != "off":
        assert counted[1] == 0 and counted[2] == 1 and 1 < counted[3] < 20, counted
