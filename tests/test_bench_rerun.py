"""A bench rerun on the same --out logs to MLflow only the cells it computes: finished cells are read back from
their folders and keep their child runs (bench.json records them). A second bench on a folder in use, or a
--reference that is not one of the bench's programs, stops with one line before it logs anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.data.benchmark import Benchmark
from valuesim.errors import ValueSimError
from valuesim.run.bench import run_bench
from valuesim.run.runner import Setup
from valuesim.tracking import setup_tracking

# statistical programs (majority and country read no profile: predicted once, reused at history 58) and one LM
# program on the dummy LM (an LM cell's identity is checked without calling the LM)
PROGRAMS = "random,majority,country,knn,demographics"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def bench_args(data: Path, out: Path, *extra) -> list:
    return ["bench", "--programs", PROGRAMS, "--lm", "dummy", "--data", data, "--history", "0,58",
            "--persons", 4, "--questions", 3, "--resamples", 50, "--out", out, "--json", *extra]  # fmt: skip


def all_runs() -> list:
    setup_tracking()
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def children(parent_id: str) -> dict[str, str]:
    """run id -> run name of the parent's child runs."""
    return {r.info.run_id: r.info.run_name for r in all_runs() if r.data.tags.get("mlflow.parentRunId") == parent_id}


def without_wall_time(stdout: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in json.loads(stdout)["results"]]


def test_a_rerun_logs_only_the_cells_it_computes(bench_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    first = invoke(*bench_args(bench_small, out))
    assert first.exit_code == 0, first.output
    parent = json.loads(first.stdout)["mlflow_run_id"]
    kids = children(parent)
    assert len(kids) == 5 * 2  # one child run per program and history
    cells = json.loads((out / "bench.json").read_text())["cells"]
    assert sorted(cells.values()) == sorted(kids) and set(cells) == set(kids.values())
    report = {name: (out / "report" / name).read_text() for name in ("results.csv", "results.md")}

    again = invoke(*bench_args(bench_small, out))
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["mlflow_run_id"] == parent
    assert children(parent) == kids  # no new child run: the finished cells keep theirs
    assert json.loads((out / "bench.json").read_text())["cells"] == cells
    assert {name: (out / "report" / name).read_text() for name in report} == report
    assert without_wall_time(again.stdout) == without_wall_time(first.stdout)

    shutil.rmtree(out / "f1-h58-knn")  # one cell's predictions gone: that cell alone is computed and logged again
    third = invoke(*bench_args(bench_small, out))
    assert third.exit_code == 0, third.output
    now = children(parent)
    new = set(now) - set(kids)
    assert len(now) == len(kids) + 1 and len(new) == 1
    (new_id,) = new
    assert now[new_id] == "f1-h58-knn"
    after = json.loads((out / "bench.json").read_text())["cells"]
    assert after == cells | {"f1-h58-knn": new_id}
    old = mlflow.MlflowClient().get_run(cells["f1-h58-knn"])  # kept, and says which run replaced it
    assert old.data.tags["valuesim.superseded_by"] == new_id
    assert {name: (out / "report" / name).read_text() for name in report} == report

    # a rerun compared with another program: no new child run, the parent says which program it was
    other = invoke(*bench_args(bench_small, out, "--reference", "majority"))
    assert other.exit_code == 0, other.output
    assert children(parent) == now
    assert mlflow.MlflowClient().get_run(parent).data.tags["reference"] == "majority"


def test_a_second_bench_on_a_folder_in_use_stops_at_once(bench_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    seen: list = []

    def second_bench(row: dict) -> None:  # while the first bench runs (and holds the folder)
        if seen:
            return
        before = {r.info.run_id for r in all_runs()}
        state = (out / "bench.json").read_text()
        r = invoke(*bench_args(bench_small, out))
        seen.append((r, before, {r.info.run_id for r in all_runs()}, state, (out / "bench.json").read_text()))

    setup = Setup(lm="dummy", persons=4, questions=3, resamples=50)
    run_bench(setup, Benchmark(bench_small), ["random", "majority"], [0, 58], [1], out, False, second_bench)
    (r, runs_before, runs_after, state_before, state_after) = seen[0]
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "in use" in lines[0], r.output
    assert runs_after == runs_before  # nothing logged
    assert state_after == state_before


def test_reference_must_be_a_program_of_the_bench(bench_small: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    r = invoke(*bench_args(bench_small, out, "--reference", "nosuch"))
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "nosuch" in lines[0] and PROGRAMS.replace(",", ", ") in lines[0], r.output
    assert not out.exists()
    assert all_runs() == []  # no MLflow run
    with pytest.raises(ValueSimError, match="nosuch"):  # the same check when run_bench is called directly
        run_bench(Setup(persons=4), Benchmark(bench_small), ["random"], [0], [1], out, False, reference="nosuch")
    assert not out.exists()
