"""A bench of statistical programs shares each history's items between programs and predicts a program once when
two history sizes give it the same inputs; its figures equal separate `evaluate` runs of every cell."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from valuesim.data.benchmark import Benchmark
from valuesim.run.bench import run_bench
from valuesim.run.runner import Setup, run_evaluate

PROGRAMS = ["random", "majority", "country", "cell", "knn"]


def test_bench_cells_equal_separate_runs_and_reuse_only_what_is_the_same(bench_small: Path, tmp_path: Path) -> None:
    bench = Benchmark(bench_small)
    setup = Setup(persons=12, questions=6, resamples=50)
    out = run_bench(setup, bench, PROGRAMS, [0, 58], [1], tmp_path / "bench", progress=False)
    table = out["table"].set_index(["program", "history"])
    for program in PROGRAMS:
        for history in (0, 58):
            cell = Setup(**{**setup.__dict__, "program": program, "history": history})
            alone, _ = run_evaluate(cell, bench, tmp_path / f"alone-{program}-{history}", progress=False)
            for metric in ("accuracy", "accuracy_ci_low", "macro_accuracy", "nmae", "n"):
                assert table.loc[(program, history), metric] == alone.metrics[metric], (program, history, metric)

    # majority, country, random read no profile answers, and the cell only demographics: predicted once;
    # knn reads the profile, so its second history is a run of its own
    dirs = {p.name for p in (tmp_path / "bench").iterdir() if p.is_dir() and p.name != "report"}
    assert dirs == {f"f1-h0-{p}" for p in PROGRAMS} | {"f1-h58-knn"}
    runs = mlflow.search_runs(experiment_names=["valuesim-bench"])
    reused = runs[runs["params.predictions_from_history"].notna()]
    assert sorted(reused["tags.mlflow.runName"]) == sorted(f"f1-h58-{p}" for p in PROGRAMS if p != "knn")
    assert (reused["params.predictions_from_history"] == "0").all()
    # a reused cell's run names the same persons as the run that holds its predictions
    first = runs[runs["tags.mlflow.runName"].str.startswith("f1-h0-")].set_index("tags.mlflow.runName")
    for _, run in reused.iterrows():
        held = first.loc[run["tags.mlflow.runName"].replace("-h58-", "-h0-")]
        assert (
            run["params.persons_by_country"] == held["params.persons_by_country"] and run["params.persons_by_country"]
        )
    assert len(runs) == 1 + 2 * len(PROGRAMS)  # the parent and one child per program and history
    assert not pd.isna(table.loc[("knn", 58), "accuracy"])
    # every row carries the country floor: the country majority's accuracy on the same items
    for (program, history), row in table.iterrows():
        assert row["country_majority_floor"] == table.loc[("country", history), "accuracy"], (program, history)
    assert "country floor" in (tmp_path / "bench" / "report" / "results.md").read_text().splitlines()[0]


def test_an_lm_program_reports_the_country_floor_of_its_items(bench_small: Path, tmp_path: Path) -> None:
    bench = Benchmark(bench_small)
    setup = Setup(program="demographics", lm="dummy", persons=4, questions=3, resamples=0)
    lm_result, _ = run_evaluate(setup, bench, tmp_path / "lm", progress=False)
    country, _ = run_evaluate(Setup(**{**setup.__dict__, "program": "country"}), bench, tmp_path / "c", progress=False)
    assert set(lm_result.predictions["key"]) == set(country.predictions["key"])
    assert lm_result.metrics["country_majority_floor"] == country.metrics["accuracy"]


def test_large_prediction_tables_are_logged_as_parquet(
    bench_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from valuesim import tracking

    monkeypatch.setattr(tracking, "TABLE_ROWS", 5)  # the selection below has 4 x 6 = 24 predictions
    result, params = run_evaluate(
        Setup(program="country", persons=4, questions=6, resamples=0), Benchmark(bench_small), tmp_path / "run"
    )
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(params["mlflow_run_id"])}
    assert "predictions.parquet" in names and "predictions.json" not in names
    path = mlflow.artifacts.download_artifacts(run_id=params["mlflow_run_id"], artifact_path="predictions.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(path), result.predictions.reset_index(drop=True))
