"""The Python API (`valuesim.load`, `valuesim.inputs`): a loaded program sends exactly the requests a run sends,
with its own LM and the runs' adapter, whatever DSPy has configured; inputs are built as `valuesim simulate` does."""

from __future__ import annotations

from pathlib import Path

import dspy
import pytest
from helpers import use

import valuesim
from valuesim.errors import NotFoundError, ValueSimError
from valuesim.lm import build_lm
from valuesim.programs.options import OptionsAdapter
from valuesim.programs.saved import save_program
from valuesim.programs.valuesim import ValueSim


@pytest.fixture(scope="module")
def person(bench_small: Path) -> tuple[dict, str]:
    """A dev respondent as a person file's JSON, and a question held out for them."""
    from valuesim.data.benchmark import Benchmark

    ex = Benchmark(bench_small).examples("values", "dev", 1, 20, 1, 1)[0]
    return {"country": ex.country, "answers": ex.known}, ex.question_code


def requests(lm: dspy.LM) -> list:
    return [(h["messages"], h["kwargs"].get("response_format") is not None) for h in lm.history]


def test_loaded_program_sends_the_runs_requests(bench_small: Path, person, tmp_path: Path) -> None:
    who, question = person
    inputs = valuesim.inputs(who, question, catalog=bench_small)
    folder = save_program(ValueSim(), "valuesim", tmp_path / "program")

    run_lm = use(build_lm("dummy"))  # as runner.configure_lm sets up a run
    ValueSim()(**inputs)
    assert run_lm.history

    dspy.configure(lm=None, adapter=dspy.ChatAdapter())  # another adapter globally, and no LM
    program = valuesim.load(folder, lm="dummy")
    assert isinstance(program.adapter, OptionsAdapter)
    prediction = program(**inputs)
    assert prediction.answer in inputs["options"]
    assert requests(program.get_lm()) == requests(run_lm)
    assert dspy.settings.lm is None and isinstance(dspy.settings.adapter, dspy.ChatAdapter)  # left as they were


def test_load_takes_an_lm_object_or_the_configured_one(bench_small: Path, person, tmp_path: Path) -> None:
    who, question = person
    inputs = valuesim.inputs(who, question, catalog=bench_small)
    folder = save_program(ValueSim(), "valuesim", tmp_path / "program")
    mine = build_lm("dummy")
    assert valuesim.load(folder, lm=mine).get_lm() is mine
    with pytest.raises(ValueSimError, match="api_base goes with an LM given by name"):
        valuesim.load(folder, lm=mine, api_base="http://localhost:8000/v1")

    configured = build_lm("dummy")
    dspy.configure(lm=configured)  # lm=None: the LM of dspy.configure, still with the runs' adapter
    program = valuesim.load(folder)
    program(**inputs)
    assert configured.history and all(h["kwargs"].get("response_format") for h in configured.history)


def test_inputs_as_simulate_builds_them(bench_small: Path, person, tmp_path: Path, monkeypatch) -> None:
    import json

    from valuesim.data.benchmark import Benchmark

    who, question = person
    file = tmp_path / "person.json"
    file.write_text(json.dumps(who))
    from_file = valuesim.inputs(file, question, catalog=Benchmark(bench_small).catalog)
    from_dict = valuesim.inputs(who, question, catalog=bench_small)
    assert {k: v for k, v in from_file.items() if k != "person_id"} == {
        k: v for k, v in from_dict.items() if k != "person_id"
    }
    assert from_file["question_code"] == question and from_file["options"]
    assert from_file["person_id"] == "person"  # a file without "id" is named by its stem

    with pytest.raises(ValueSimError, match="unknown question code 'Q999'"):
        valuesim.inputs(who, "Q999", catalog=bench_small)
    with pytest.raises(ValueSimError, match="Q262 .* is a free-number item"):
        valuesim.inputs(who, "Q262", catalog=bench_small)
    with pytest.raises(ValueSimError, match="answers.Q1: "):
        valuesim.inputs({**who, "answers": {"Q1": "not an option"}}, question, catalog=bench_small)
    # the default catalog is the built benchmark under VALUESIM_HOME
    with pytest.raises(NotFoundError, match="valuesim data build"):
        valuesim.inputs(who, question)
    (Path(tmp_path / "home" / "data")).mkdir(parents=True)
    (tmp_path / "home" / "data" / "benchmark").symlink_to(bench_small)
    assert valuesim.inputs(who, question) == from_dict
