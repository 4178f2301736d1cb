"""The README's Python example runs as written: every ```python block of README.md, executed in a folder holding
the `person.json` that `valuesim data person` writes, after a `valuesim compile --lm dummy` whose run it loads.

The only substitutions, all listed in PLACEHOLDERS: the run id, and the embedded model for `dummy` (the example
names Gemma; the harness is what is tested here, so no model runs).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

from valuesim.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def readme_home(bench_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """VALUESIM_HOME with the benchmark at its default place and one compiled program in its MLflow store; the
    working folder holds person.json, a benchmark respondent written by `valuesim data person`."""
    import mlflow.dspy.save

    from valuesim.data.benchmark import Benchmark

    home = Path(tmp_path / "home")
    (home / "data").mkdir(parents=True)
    (home / "data" / "benchmark").symlink_to(bench_small)
    # MLflow infers the dspy flavor's pip requirements in a subprocess (7 s); its fallback is the same list
    monkeypatch.setattr(mlflow.dspy.save, "infer_pip_requirements", lambda path, flavor, fallback=None, **_: fallback)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = invoke("compile", "--program", "valuesim", "--optimizer", "bootstrap", "--lm", "dummy",
                   "--train", 2, "--dev", 1, "--questions", 2, "--history", 20, "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    run_id = json.loads(r.stdout)["mlflow_run_id"]

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    person_id = Benchmark(bench_small).respondents("test")["person_id"].iloc[0]
    r = invoke("data", "person", person_id, "--history", 58)
    assert r.exit_code == 0, r.output
    (work / "person.json").write_text(r.stdout)
    dspy.settings.configure(lm=None, adapter=None)  # the example must not lean on the compile's global settings
    return {"<run_id>": run_id}


def test_readme_has_one_python_example() -> None:
    blocks = python_blocks()
    assert len(blocks) == 1, "README: one ```python block, the example this test runs"
    for marked in ('"runs:/<run_id>"', 'lm="gemma"', '"person.json"'):
        assert marked in blocks[0], f"the README example no longer says {marked}: update PLACEHOLDERS here"


def test_readme_python_example_runs(readme_home: dict[str, str]) -> None:
    placeholders = {**readme_home, 'lm="gemma"': 'lm="dummy"'}
    (code,) = python_blocks()
    for marked, value in placeholders.items():
        code = code.replace(marked, value)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own example
    prediction, inputs = scope["prediction"], scope["inputs"]
    assert prediction.answer in inputs["options"]  # dummy answers the first option, through the options adapter
    assert inputs["question_code"] == "Q164"
    assert dspy.settings.lm is None and dspy.settings.adapter is None  # nothing configured globally
