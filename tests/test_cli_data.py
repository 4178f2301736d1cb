"""The `valuesim data build` and `valuesim evaluate` commands, through typer's CliRunner."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from valuesim.cli import app


def make_runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        return CliRunner()  # click >= 8.2 always keeps result.stderr apart from result.stdout


def last_json(text: str) -> dict:
    """The JSON object a --json command printed (the last one, should anything precede it)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        decoder = json.JSONDecoder()
        for start in reversed([i for i, ch in enumerate(text) if ch == "{" and (i == 0 or text[i - 1] == "\n")]):
            try:
                return decoder.raw_decode(text[start:])[0]
            except json.JSONDecodeError:
                continue
    raise AssertionError(f"no JSON object in output: {text[-500:]!r}")


def stderr_of(result) -> str:
    try:
        return result.stderr
    except ValueError:  # click < 8.2 without mix_stderr=False
        return result.output


def invoke(*args: str):
    result = make_runner().invoke(app, [str(a) for a in args])
    return result


def assert_clean_error(result, *fragments: str) -> str:
    """Non-zero exit, an `Error:` message naming the fragments, no traceback."""
    err = stderr_of(result)
    assert result.exit_code != 0, result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in err and "Traceback" not in result.stdout
    assert err.startswith("Error:"), err
    squashed = "".join(err.split())  # rich may wrap the message anywhere, even inside a path
    for fragment in fragments:
        assert "".join(fragment.split()) in squashed, err
    return err


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for this module's runs: creating a fresh SQLite store takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def shared_mlflow_store(mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)


@pytest.fixture(scope="module")
def built(wvs_small: Path, builds: Path) -> tuple[Path, dict]:
    out = builds / "cli_bench"  # beside bench_small: reuses its parse cache
    result = invoke("data", "build", "--wvs", wvs_small, "--out", out, "--json")
    assert result.exit_code == 0, stderr_of(result)
    return out, last_json(result.stdout)


def evaluate_args(data: Path, *extra) -> list:
    base = ["evaluate", "--program", "knn", "--data", data, "--split", "dev", "--fold", "1", "--history", "232"]
    return [*base, "--persons", "3", "--questions", "5", "--json", *extra]


# ---------------------------------------------------------------------------------------------------------------
# data build


def test_data_build_json(built) -> None:
    out, manifest = built
    assert manifest["ingest"]["mapped_share"] == 1.0
    assert manifest["ingest"]["unmapped"] == 0 and manifest["unmapped"] == []
    assert manifest["respondents"] == 160 and manifest["splits"] == {"train": 96, "dev": 32, "test": 32}
    assert manifest["fingerprint"] == json.loads((out / "manifest.json").read_text())["fingerprint"]
    assert "report" not in manifest
    for name in ("catalog.json", "respondents", "values", "reference"):
        assert (out / name).exists(), name


def test_data_build_bad_file_is_a_one_line_error(wvs_small: Path, tmp_path: Path) -> None:
    wvs = tmp_path / "wvs"
    (wvs / "countries").mkdir(parents=True)
    for name in ("codebook.json", "questions.json", "question_metadata.json"):
        shutil.copy(wvs_small / name, wvs / name)
    shutil.copytree(wvs_small / "protocol", wvs / "protocol")
    bad = wvs / "countries" / "USA.xlsx"
    bad.write_bytes((wvs_small / "countries" / "USA.xlsx").read_bytes()[:4096])
    result = invoke("data", "build", "--wvs", wvs, "--out", tmp_path / "bench", "--json")
    assert_clean_error(result, "USA.xlsx", "cannot be read as xlsx")
    assert result.stdout == ""


def test_data_build_missing_wvs_folder(tmp_path: Path) -> None:
    result = invoke("data", "build", "--wvs", tmp_path / "nowhere", "--out", tmp_path / "bench")
    assert_clean_error(result, "codebook.json")


def test_data_build_report_unknown(wvs_small: Path, tmp_path: Path) -> None:
    """--report-unknown lists every unmapped label instead of stopping at the first one."""
    wvs = tmp_path / "wvs"
    (wvs / "countries").mkdir(parents=True)
    for name in ("codebook.json", "questions.json", "question_metadata.json"):
        shutil.copy(wvs_small / name, wvs / name)
    shutil.copytree(wvs_small / "protocol", wvs / "protocol")
    country, interview, q1, q2 = (
        "B_COUNTRY_ALPHA: ISO 3166-1 alpha-3 country code",
        "D_INTERVIEW: Interview ID",
        "Q1: Important in life: Family",
        "Q2: Important in life: Friends",
    )
    pd.DataFrame(
        {
            country: ["USA"] * 5,
            interview: range(1, 6),
            q1: ["Very important", "Hugely important", "Very important", "Rather important", "Don't know"],
            q2: ["Very important", "Very important", "Kind of", "Rather important", "Not very important"],
        }
    ).to_csv(wvs / "countries" / "USA.csv", index=False)
    result = invoke("data", "build", "--wvs", wvs, "--out", tmp_path / "bench")
    assert_clean_error(result, "Hugely important", "USA.csv")
    # 7 of 9 answered cells map: listed, but not written without --force
    result = invoke("data", "build", "--wvs", wvs, "--out", tmp_path / "bench", "--report-unknown", "--json")
    assert result.exit_code == 1 and "only 77.78% of the answered cells map" in stderr_of(result)
    assert "column 'Q1: Important in life: Family': 1 cells" in stderr_of(result)
    assert not (tmp_path / "bench").exists()
    result = invoke("data", "build", "--wvs", wvs, "--out", tmp_path / "bench", "--report-unknown", "--force", "--json")
    assert result.exit_code == 0, stderr_of(result)
    manifest = last_json(result.stdout)
    assert sorted(u["value"] for u in manifest["unmapped"]) == ["Hugely important", "Kind of"]
    assert manifest["ingest"]["unmapped"] == 2
    assert manifest["ingest"]["mapped_share"] == pytest.approx(7 / 9)  # 10 cells, 1 missing, 2 unknown


# ---------------------------------------------------------------------------------------------------------------
# evaluate


def test_evaluate_knn_json(built) -> None:
    data, manifest = built
    result = invoke(*evaluate_args(data))
    assert result.exit_code == 0, stderr_of(result)
    report = last_json(result.stdout)
    metrics = report["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["invalid"] == 0 and metrics["failed"] == 0
    assert metrics["n"] == 15 and metrics["persons"] == 3 and metrics["questions"] >= 5
    assert 0.0 <= metrics["nmae"] <= 1.0 and 0.0 <= metrics["wasserstein"] <= 1.0
    params = report["params"]
    assert params["program"] == "knn" and params["dataset"] == manifest["fingerprint"]
    run_dir = Path(params["run_dir"])
    assert run_dir.is_relative_to(Path(os.environ["VALUESIM_HOME"]).resolve())  # default runs/ under the home
    with sqlite3.connect(run_dir / "predictions.sqlite") as db:
        assert db.execute("SELECT COUNT(*), SUM(status = 'ok') FROM predictions").fetchone() == (15, 15)
    assert sum(row["n"] for row in report["by_country"]) == 15


def test_evaluate_resume_skips_stored_predictions(built, tmp_path: Path) -> None:
    data, _ = built
    run_dir = tmp_path / "run"
    first = invoke(*evaluate_args(data, "--run-dir", run_dir))
    assert first.exit_code == 0, stderr_of(first)
    with sqlite3.connect(run_dir / "predictions.sqlite") as db:
        db.execute("UPDATE predictions SET answer = NULL, status = 'invalid'")  # marks what a rerun would redo
    again = invoke(*evaluate_args(data, "--run-dir", run_dir, "--resume"))
    assert again.exit_code == 0, stderr_of(again)
    metrics = last_json(again.stdout)["metrics"]
    assert metrics["n"] == 15 and metrics["invalid"] == 15  # stored rows were kept, not predicted again
    with sqlite3.connect(run_dir / "predictions.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM predictions").fetchone() == (15,)


def test_evaluate_other_baselines(built) -> None:
    data, _ = built
    for program in ("majority", "country", "cell"):
        args = evaluate_args(data)
        args[args.index("knn")] = program
        result = invoke(*args)
        assert result.exit_code == 0, (program, stderr_of(result))
        metrics = last_json(result.stdout)["metrics"]
        assert metrics["invalid"] == 0 and 0.0 <= metrics["accuracy"] <= 1.0, program


def test_evaluate_unknown_program(built) -> None:
    data, _ = built
    result = invoke("evaluate", "--program", "oracle", "--data", data, "--json")
    assert_clean_error(result, "oracle", "program")
    assert result.stdout == ""


def test_evaluate_missing_data_dir(tmp_path: Path) -> None:
    result = invoke("evaluate", "--program", "knn", "--data", tmp_path / "no-benchmark", "--json")
    assert_clean_error(result, "no built benchmark", "valuesim data build")
    assert result.stdout == ""


def test_errors_are_one_line(built, tmp_path: Path) -> None:
    data, _ = built
    for args in (
        ["evaluate", "--program", "oracle", "--data", data],
        ["evaluate", "--program", "knn", "--data", tmp_path / "no-benchmark"],
    ):
        err = stderr_of(invoke(*args))
        assert len(err.strip().splitlines()) == 1, err
