"""Every --json output and every JSON file ValueSim writes is strict JSON (RFC 8259): JavaScript's JSON.parse, Go
and jq refuse Python's NaN/Infinity, so undefined values are null. Reports (csv, md) show them as empty cells."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from valuesim import files
from valuesim.cli import app
from valuesim.cli.options import emit_json


def refuse(token: str) -> Any:
    raise AssertionError(f"non-standard JSON constant {token}")


def strict_loads(text: str) -> Any:
    """json.loads as a strict parser: NaN, Infinity and -Infinity are errors."""
    return json.loads(text, parse_constant=refuse)


def invoke(*args: Any) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return strict_loads(result.stdout)


@pytest.fixture(autouse=True)
def module_mlflow(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}")


def test_strict_json_nulls_every_undefined_value() -> None:
    obj = {
        "nan": float("nan"),
        "inf": [float("inf"), -math.inf],
        "numpy": {"f": np.float64("nan"), "f32": np.float32("inf"), "i": np.int64(3), "ok": np.float32(0.5)},
        "frame": pd.DataFrame({"a": [1.0, np.nan], "b": ["x", None]}),
        "series": pd.Series({"x": np.nan}),
        "path": Path("/tmp/x"),
    }
    back = strict_loads(files.strict_json(obj))
    assert back == {
        "nan": None,
        "inf": [None, None],
        "numpy": {"f": None, "f32": None, "i": 3, "ok": 0.5},
        "frame": [{"a": 1.0, "b": "x"}, {"a": None, "b": None}],
        "series": {"x": None},
        "path": "/tmp/x",
    }


def test_write_json_and_emit_json_are_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files.write_json(tmp_path / "x.json", {"p_value": float("nan"), "n": np.int64(2)})
    assert "NaN" not in (tmp_path / "x.json").read_text()
    assert strict_loads((tmp_path / "x.json").read_text()) == {"p_value": None, "n": 2}
    emit_json({"table": pd.DataFrame({"vs_reference": [np.nan, 0.1]})})
    assert strict_loads(capsys.readouterr().out) == {"table": [{"vs_reference": None}, {"vs_reference": 0.1}]}


def written_json(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.json") if p.is_file()]


def assert_strict_files(folder: Path) -> None:
    found = written_json(folder)
    assert found, folder
    for path in found:
        text = path.read_text()
        strict_loads(text)
        assert "NaN" not in text and "Infinity" not in text, path


def test_data_build_json_and_its_files(wvs_small: Path, builds: Path) -> None:
    out = builds / "strict_build"  # beside bench_small: reuses its parse cache
    invoke("data", "build", "--wvs", wvs_small, "--out", out, "--json")
    assert_strict_files(out)


def test_evaluate_json(bench_small: Path, tmp_path: Path) -> None:
    out = invoke("evaluate", "--program", "knn", "--data", bench_small, "--persons", 3, "--questions", 4,
                 "--run-dir", tmp_path / "run", "--json")  # fmt: skip
    assert out["metrics"]["n"] == 12
    assert all(isinstance(out["metrics"][m], float) for m in ("log_loss", "brier", "ece", "uniform_log_loss"))
    assert len(out["predictions"]) == 12
    for row in out["predictions"]:
        assert row["probs_method"] == "counts" and sum(row["probs"].values()) == pytest.approx(1.0)
    assert (tmp_path / "run" / "reliability.png").stat().st_size > 0
    assert_strict_files(tmp_path / "run")


def test_bench_json_with_a_reference_row(bench_small: Path, tmp_path: Path) -> None:
    """The reference row has no difference to itself: its vs_reference, CI and p-value are null, not NaN."""
    out = invoke("bench", "--programs", "random,country,knn", "--reference", "country", "--data", bench_small,
                 "--history", "0,58", "--persons", 3, "--questions", 3, "--resamples", 20, "--out",
                 tmp_path / "bench", "--json")  # fmt: skip
    rows = [r for r in out["results"] if r["program"] == "country"]
    assert rows and all(r["vs_reference"] is None and r["p_value"] is None for r in rows)
    others = [r for r in out["results"] if r["program"] != "country"]
    assert all(isinstance(r["vs_reference"], float) for r in others)
    assert all(isinstance(r["vs_reference_log_loss"], float) for r in others)
    for r in out["results"]:  # every row: the distribution scores with their CIs and the floors
        for m in ("log_loss", "brier", "rps", "ece"):
            assert isinstance(r[m], float) and r[f"{m}_ci_low"] <= r[m] <= r[f"{m}_ci_high"], (m, r)
        assert r["uniform_log_loss"] > 0 and isinstance(r["country_log_loss"], float)
    assert_strict_files(tmp_path / "bench")
    report = tmp_path / "bench" / "report"
    assert (report / "reliability.png").read_bytes().startswith(b"\x89PNG")
    for name in ("results.csv", "results.md", "distributions.md", "cost.csv", "cost.md"):
        text = (report / name).read_text()
        assert "nan" not in text.lower(), (name, text)
    results = pd.read_csv(report / "results.csv")
    assert results.loc[results["program"] == "country", "vs_reference"].isna().all()


def test_compile_json(bench_small: Path, tmp_path: Path) -> None:
    out = invoke("compile", "--program", "demographics", "--optimizer", "bootstrap", "--lm", "dummy", "--data",
                 bench_small, "--train", 2, "--dev", 1, "--questions", 1, "--history", 20, "--run-dir",
                 tmp_path / "c", "--json")  # fmt: skip
    assert out["after"]["n"] == 1
    assert_strict_files(tmp_path / "c")


def test_simulate_json(bench_small: Path, tmp_path: Path) -> None:
    person = tmp_path / "p.json"
    person.write_text(json.dumps({"country": "USA", "answers": {"Q260": "Female", "Q262": 34, "Q1": 1}}))
    out = invoke("simulate", "--program", "valuesim", "--person", person, "--question", "Q46", "--data", bench_small,
                 "--lm", "dummy", "--json")  # fmt: skip
    assert out["valid"] is True


def test_estimate_json(bench_small: Path) -> None:
    out = invoke("estimate", "--programs", "demographics,country", "--data", bench_small, "--persons", 2,
                 "--questions", 2, "--history", 20, "--lm", "dummy", "--json")  # fmt: skip
    assert out["programs"]
