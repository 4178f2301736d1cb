"""Every optimizer the CLI offers compiles without a real model (DummyLM-based), keeps its validation persons out
of the demos, and sends instruction proposals to the proposer LM (`--reflection-lm`) rather than the task LM."""

from __future__ import annotations

import json
import re

import dspy
import pytest
from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine
from dspy.utils.dummies import DummyLM
from helpers import YES_NO, make_ex, use, user_message

from valuesim.optimize.compile import compile_program
from valuesim.programs.baselines import FullInfo
from valuesim.programs.options import OptionsAdapter

TRAIN = [make_ex(f"Q{i}", "1", person_id=f"train-{i % 3}") for i in range(1, 7)]
VAL = [make_ex(f"Q{i}", "2", person_id=f"val-{i % 2}", options=YES_NO) for i in range(11, 15)]
KNOWN = {"Q1", "Q2", "Q3", "Q11", "Q12"}  # the task LM answers these right, and the others only if shown demos
GOLD = {ex.question: ex.answer for ex in TRAIN + VAL}


def output_fields(system: str) -> list[str]:
    """The output field names a DSPy adapter lists in its system message (empty for a raw prompt)."""
    block = re.search(r"Your output fields are:\n(.*?)\n\n", system, re.S)
    return re.findall(r"`(\w+)`", block.group(1)) if block else []


class _Engine(DummyEngine):
    def _complete_messages(self, messages):
        self.owner.calls.append(messages)
        self.owner.answers = iter([self.owner.reply(messages)])
        return super()._complete_messages(messages)


class FakeLM(DummyLM):
    """A DummyLM that answers whatever a signature asks: the task's `answer` from the gold table (right for KNOWN
    questions or when the prompt has demos, wrong otherwise), any other output field with filler text; `calls`
    keeps every prompt."""

    def __init__(self, label: str):
        super().__init__([], adapter=OptionsAdapter())
        self.label = label
        self.calls: list[list[dict]] = []
        self._engine_spec = _Engine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def copy(self, **kwargs):
        copied = super().copy(**kwargs)
        copied.calls = self.calls  # optimizers copy LMs to change temperature; count their calls here
        copied._engine_spec = _Engine(copied)
        copied._async_engine_spec = AsyncDummyEngine(copied._engine_spec)
        return copied

    def reply(self, messages: list[dict]) -> dict:
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        fields = output_fields(system) or ["new_instruction"]  # GEPA's reflection prompt is raw text
        if "answer" in fields:
            user = user_message(messages)
            question = re.search(r"\[\[ ## question ## \]\]\n(.*)", user).group(1)
            options = json.loads(re.search(r"\[\[ ## options ## \]\]\n(\{.*\})", user).group(1))
            gold = GOLD[question]
            code = question.split()[-1].rstrip("?")
            answer = gold if code in KNOWN or len(messages) > 2 else next(c for c in options if c != gold)
            return {"answer": answer}
        return {f: f"{self.label} text for {f} #{len(self.calls)}" for f in fields}

    def answered(self) -> int:
        return sum("answer" in output_fields(m[0]["content"]) for m in self.calls if m[0]["role"] == "system")


def demo_questions(program: dspy.Module) -> set[str]:
    return {d["question"] for _, p in program.named_predictors() for d in p.demos}


@pytest.mark.parametrize("optimizer", ["random-search", "mipro", "gepa"])
def test_optimizer_compiles_with_dummy_lms_and_keeps_validation_out_of_demos(optimizer: str) -> None:
    task, proposer = use(FakeLM("task")), FakeLM("proposer")
    compiled = compile_program(FullInfo(), optimizer, TRAIN, VAL, seed=0, proposer_lm=proposer)

    assert isinstance(compiled, FullInfo)
    val_texts = {ex.question for ex in VAL}
    assert not demo_questions(compiled) & val_texts  # validation examples only score candidates
    assert task.answered() > 0
    # the task LM answered survey questions and nothing else: proposals went to the proposer
    assert task.answered() == len(task.calls)
    val_scored = {q for m in task.calls for q in val_texts if f"[[ ## question ## ]]\n{q}" in user_message(m)}
    assert val_scored == val_texts  # candidates were scored on every validation example
    if optimizer == "random-search":
        assert not proposer.calls  # random search proposes no instructions
        assert demo_questions(compiled)  # demos help this LM, so the chosen candidate has some
    else:
        assert proposer.calls
        instruction = compiled.answer.signature.instructions
        assert instruction == FullInfo().answer.signature.instructions or "proposer text" in instruction


def test_gepa_reflection_lm_defaults_to_the_task_lm() -> None:
    task = use(FakeLM("task"))
    compile_program(FullInfo(), "gepa", TRAIN, VAL, seed=0)
    assert len(task.calls) > task.answered()  # reflection prompts reached the task LM


def test_compile_command_with_gepa_and_a_separate_reflection_lm(bench_small, tmp_path) -> None:
    """The whole `valuesim compile` path with GEPA and --reflection-lm, on --lm dummy (no model)."""
    from valuesim.data.benchmark import Benchmark
    from valuesim.run.runner import Setup, run_compile

    setup = Setup(program="demographics", lm="dummy", questions=2, history=0, resamples=50)
    out = run_compile(setup, Benchmark(bench_small), "gepa", 4, 2, tmp_path / "run", False, reflection_lm="dummy")
    assert out["params"]["reflection_lm"] == "dummy" and out["params"]["optimizer"] == "gepa"
    train, val, dev = (set(out["persons"][k]) for k in ("train", "val", "dev"))
    assert train and val and dev and not (train & val) and not (train & dev) and not (val & dev)
    assert {"difference", "ci_low", "ci_high", "p_value"} <= set(out["gain"])


def test_mipro_compiles_without_a_deprecation_warning() -> None:
    """MIPROv2.compile is called without `requires_permission_to_run` (deprecated in DSPy 3.4: False only logs a
    warning, True raises): no warning and no log record about it."""
    import logging
    import warnings

    from dspy.teleprompt import mipro_optimizer_v2

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[assignment,method-assign]
    logger = logging.getLogger(mipro_optimizer_v2.__name__)
    logger.addHandler(handler)
    try:
        use(FakeLM("task"))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            compile_program(FullInfo(), "mipro", TRAIN, VAL, seed=0, proposer_lm=FakeLM("proposer"))
    finally:
        logger.removeHandler(handler)
    said = [str(w.message) for w in seen] + [r.getMessage() for r in records]
    assert not [m for m in said if "requires_permission" in m or "deprecat" in m.lower()], said
    assert records, "no MIPROv2 log record was captured: the check above would pass vacuously"
