"""The private DSPy APIs valuesim still calls, pinned: each test fails with a message naming the call when the
pinned DSPy renames it, changes its parameters, stops calling it, or returns another shape. Every other library
call in valuesim/ is public (LiteLLM's tokenizer choice is `litellm.utils.select_tokenizer`).

- `JSONAdapter._prepare_response_format` (programs/options.py): the only step between DSPy's response_format
  choice and the LM call; OptionsAdapter adds a JSON schema for models LiteLLM does not know.
- `json_adapter._get_structured_outputs_response_format` (programs/options.py): DSPy's output model of a signature.
- `Adapter._call_preprocess` (estimate/runs.py): the pre-format step RenderingAdapter repeats to render a call as
  the run's adapter would, without an LM.
- `MIPROv2._set_random_seeds` / `_set_hyperparams_from_run_mode` (estimate/compile.py): MIPROv2's auto sizing;
  the call-count formula copied from `_estimate_lm_calls` is checked against it here.
"""

from __future__ import annotations

import inspect
import re

import dspy
import pydantic
from dspy.adapters.base import Adapter
from dspy.adapters.json_adapter import JSONAdapter
from dspy.teleprompt.mipro_optimizer_v2 import MIPROv2
from dspy.utils.dummies import DummyLM
from helpers import SIGNATURES, make_ex

from valuesim.estimate.compile import optimizer_runs
from valuesim.estimate.runs import RenderingAdapter
from valuesim.optimize.metric import answer_metric
from valuesim.programs.baselines import FullInfo
from valuesim.programs.options import OptionsAdapter, with_options

OPTIONS = {"1": "Very important", "2": "Rather important", "3": "Not very important"}
PINNED = "the pinned DSPy changed a private API valuesim relies on"


def params(fn: object) -> list[str]:
    return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]


def calls(fn: object, text: str) -> bool:
    return text in inspect.getsource(fn)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------------
# JSONAdapter._prepare_response_format, overridden by OptionsAdapter


def test_prepare_response_format_is_still_the_hook_before_each_lm_call() -> None:
    fn = getattr(JSONAdapter, "_prepare_response_format", None)
    assert fn is not None, f"{PINNED}: JSONAdapter._prepare_response_format is gone (OptionsAdapter overrides it)"
    assert params(fn) == ["self", "lm", "lm_kwargs", "signature"], f"{PINNED}: _prepare_response_format{params(fn)}"
    for method in (JSONAdapter.__call__, JSONAdapter.acall):
        assert calls(method, "self._prepare_response_format(lm, lm_kwargs, signature)"), (
            f"{PINNED}: JSONAdapter.{method.__name__} no longer calls _prepare_response_format, so OptionsAdapter's "
            "schema for served models would never be sent"
        )


class _Served(DummyLM):
    """Stands in for an OpenAI-compatible server of a model LiteLLM does not know (`openai/<name> --api-base`):
    no response_format support advertised, so DSPy itself sends none. Keeps each call's keyword arguments."""

    def __init__(self) -> None:
        super().__init__([{"answer": "2"}], adapter=OptionsAdapter())
        self.kwargs["api_base"] = "http://127.0.0.1:9/v1"
        self.sent: list[dict] = []

    def __call__(self, prompt=None, *, messages=None, **kwargs):  # type: ignore[no-untyped-def]
        self.sent.append(kwargs)
        return super().__call__(prompt, messages=messages, **kwargs)


def test_options_adapter_schema_reaches_a_served_model_through_dspys_public_call() -> None:
    class Ask(dspy.Signature):
        question: str = dspy.InputField()
        answer: str = dspy.OutputField()

    lm = _Served()
    assert "response_format" not in lm.supported_params
    out = OptionsAdapter()(lm, {}, with_options(Ask, OPTIONS), [], {"question": "How important is family?"})
    assert out[0]["answer"] == "2"
    sent = lm.sent[0].get("response_format")
    assert sent is not None, f"{PINNED}: OptionsAdapter._prepare_response_format was not called before the LM call"
    assert sent["type"] == "json_object" and sent["schema"]["properties"]["answer"]["enum"] == list(OPTIONS), sent


# --------------------------------------------------------------------------------------------------------------------
# json_adapter._get_structured_outputs_response_format


def test_structured_outputs_response_format_returns_a_pydantic_model_of_the_outputs() -> None:
    from dspy.adapters import json_adapter

    fn = getattr(json_adapter, "_get_structured_outputs_response_format", None)
    assert fn is not None, f"{PINNED}: dspy.adapters.json_adapter._get_structured_outputs_response_format is gone"
    assert params(fn)[:2] == ["signature", "use_native_function_calling"], f"{PINNED}: its parameters are {params(fn)}"
    model = fn(with_options(SIGNATURES["cognitive"], OPTIONS), True)
    assert isinstance(model, type) and issubclass(model, pydantic.BaseModel), f"{PINNED}: it returned {model!r}"
    schema = model.model_json_schema()
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(schema["properties"]), schema
    assert schema["properties"]["answer"]["enum"] == list(OPTIONS), schema


# --------------------------------------------------------------------------------------------------------------------
# Adapter._call_preprocess, repeated by RenderingAdapter


def test_call_preprocess_is_still_the_step_before_format() -> None:
    fn = getattr(Adapter, "_call_preprocess", None)
    assert fn is not None, f"{PINNED}: Adapter._call_preprocess is gone (estimate's RenderingAdapter calls it)"
    assert params(fn) == ["self", "lm", "lm_kwargs", "signature", "inputs"], f"{PINNED}: _call_preprocess{params(fn)}"
    src = inspect.getsource(Adapter.__call__)
    assert re.search(
        r"(\w+) = self\._call_preprocess\(lm, lm_kwargs, signature, inputs\)\n\s+messages = "
        r"self\.format\(\1, demos, inputs\)",
        src,
    ), (  # fmt: skip
        f"{PINNED}: Adapter.__call__ no longer formats the output of _call_preprocess, so estimate's rendered "
        "prompts may differ from the ones a run sends"
    )
    signature = with_options(SIGNATURES["cognitive"], OPTIONS)
    processed = OptionsAdapter()._call_preprocess(DummyLM([]), {}, signature, {})
    assert isinstance(processed, type) and issubclass(processed, dspy.Signature), f"{PINNED}: returned {processed!r}"


def test_rendered_call_is_the_message_list_a_run_sends() -> None:
    """RenderingAdapter (estimate) and OptionsAdapter (a run) send the same messages for one call."""
    signature, inputs = SIGNATURES["cognitive"], make_ex("Q1", "1").inputs()
    fields = {k: inputs[k] for k in signature.input_fields if k in inputs}
    program = dspy.Predict(with_options(signature, OPTIONS))
    sent = DummyLM([{"analysis": "x", "answer": "1"}], adapter=OptionsAdapter())
    with dspy.context(lm=sent, adapter=OptionsAdapter()):
        program(**fields)
    renderer = RenderingAdapter({}, 100)
    with dspy.context(lm=DummyLM([]), adapter=renderer):
        program(**fields)
    assert renderer.calls[0].messages == sent.history[-1]["messages"]


# --------------------------------------------------------------------------------------------------------------------
# MIPROv2's auto sizing


def _mipro() -> MIPROv2:
    idle = DummyLM([])
    return MIPROv2(metric=answer_metric, auto="light", max_bootstrapped_demos=2, max_labeled_demos=2,
                   prompt_model=idle, task_model=idle)  # fmt: skip


def test_mipro_sizing_methods_keep_their_parameters_and_shape() -> None:
    for name, expected in {
        "_set_random_seeds": ["self", "seed"],
        "_set_hyperparams_from_run_mode": [
            "self",
            "program",
            "num_trials",
            "minibatch",
            "zeroshot_opt",
            "valset",
            "num_instruct_candidates",
            "num_fewshot_candidates",
        ],  # fmt: skip
    }.items():
        fn = getattr(MIPROv2, name, None)
        assert fn is not None, f"{PINNED}: MIPROv2.{name} is gone (valuesim estimate's compile sizing calls it)"
        assert params(fn) == expected, f"{PINNED}: MIPROv2.{name}{params(fn)}, valuesim passes {expected}"
    assert calls(MIPROv2.compile, "self._set_hyperparams_from_run_mode("), (
        f"{PINNED}: MIPROv2.compile no longer sizes its run with _set_hyperparams_from_run_mode"
    )
    mipro, valset = _mipro(), [make_ex(f"Q{i}", "1") for i in range(120)]
    mipro._set_random_seeds(0)
    out = mipro._set_hyperparams_from_run_mode(FullInfo(), None, True, False, valset, None, None)
    assert isinstance(out, tuple) and len(out) == 5, f"{PINNED}: _set_hyperparams_from_run_mode returned {out!r}"
    trials, val, minibatch, n_instr, n_fewshot = out
    assert all(isinstance(n, int) for n in (trials, n_instr, n_fewshot)) and isinstance(minibatch, bool), out
    assert len(val) == 100 and minibatch, f"{PINNED}: auto='light' no longer validates on 100 examples in minibatches"


def test_mipro_call_estimate_matches_dspys_own() -> None:
    """estimate/compile.py copies the formula of MIPROv2._estimate_lm_calls; DSPy's printout says the same."""
    program, valset = FullInfo(), [make_ex(f"Q{i}", "1") for i in range(120)]
    ours = optimizer_runs("mipro", program, n_train=10, valset=valset, seed=0, demos=2, candidates=4)
    mipro = _mipro()
    mipro._set_random_seeds(0)
    trials, val, minibatch, n_instr, _ = mipro._set_hyperparams_from_run_mode(program, None, True, False, valset,
                                                                               None, None)  # fmt: skip
    lines = mipro._estimate_lm_calls(program, trials, minibatch, 35, 5, val, True, n_instr)
    plain = [re.sub(r"\033\[[0-9;]*m", "", line) for line in lines]
    prompt = int(re.search(r"= (\d+) prompt model calls", plain[0]).group(1))  # type: ignore[union-attr]
    task = int(re.search(r"= (\d+) LM [Pp]rogram calls", plain[1]).group(1))  # type: ignore[union-attr]
    assert (ours["proposer_calls"], ours["eval_demos"]) == (prompt, task), (
        f"{PINNED}: MIPROv2 now estimates {prompt} proposer and {task} program calls, valuesim {ours}"
    )


def test_litellm_tokenizer_choice_is_public() -> None:
    """estimate names its tokenizer through LiteLLM's public `utils.select_tokenizer` (it was `_select_tokenizer`)."""
    from valuesim.estimate.runs import Counter

    assert Counter("gpt-4o").describe().startswith("tiktoken "), Counter("gpt-4o").describe()
