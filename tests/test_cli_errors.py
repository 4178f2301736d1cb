"""How the command line fails: user errors are one line naming the flag, file or value; bugs keep their traceback;
flags are validated before any work; warnings are filtered one by one, not all at once."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from valuesim import cli
from valuesim.cli import app
from valuesim.errors import NotFoundError, UnknownKeyError, ValueSimError


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["evaluate", "--history", "-200"], "--history"),
        (["evaluate", "--questions", "-2"], "--questions"),
        (["evaluate", "--threads", "0"], "--threads"),
        (["evaluate", "--threads", "-4"], "--threads"),
        (["evaluate", "--persons", "0"], "--persons"),
        (["evaluate", "--fold", "6"], "--fold"),
        (["evaluate", "--split", "validation"], "'validation' is not one of 'train', 'dev', 'test'"),
        (["evaluate", "--protocol", "paper"], "--protocol"),
        (["bench", "--split", "foo"], "'foo' is not one of"),
        (["compile", "--optimizer", "adam"], "'adam' is not one of"),
        (["compile", "--train", "0"], "--train"),
    ],
)
def test_bad_flags_are_rejected_before_any_work(args: list[str], fragment: str) -> None:
    r = invoke(*args, "--data", "/nonexistent")  # the flag error comes first: no benchmark is read
    assert r.exit_code == 2
    assert fragment in " ".join(r.output.replace("│", " ").split()), r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["bench", "--programs", ""], "--programs needs at least one program"),
        (["bench", "--programs", " , "], "--programs needs at least one program"),
        (["bench", "--history", "0,-5"], "--history takes comma-separated integers >= 0"),
        (["bench", "--history", "a,b"], "--history takes comma-separated integers"),
        (["bench", "--folds", "0"], "--folds takes comma-separated integers 1-5"),
    ],
)
def test_bench_list_flags(args: list[str], fragment: str) -> None:
    r = invoke(*args, "--data", "/nonexistent")
    assert r.exit_code == 1
    assert fragment in r.output and "Traceback" not in r.output


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    r = invoke("evaluate", "--data", tmp_path / "nothing")
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [f"Error: {tmp_path / 'nothing'}: no built benchmark here; run "
                                             "`valuesim data build --wvs <WVS-7 folder>` first"]  # fmt: skip


def test_bugs_keep_their_traceback(bench_small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ValueError or KeyError that is not a ValueSimError is a bug: it must not be dressed up as 'Error: ...'."""

    def broken(*args, **kwargs):
        raise KeyError("internal bookkeeping")

    monkeypatch.setattr("valuesim.run.runner.run_evaluate", broken)
    r = invoke("evaluate", "--data", bench_small, "--program", "majority")
    assert r.exit_code == 1
    assert isinstance(r.exception, KeyError)  # propagated, so the user sees the traceback
    assert "Error:" not in r.output


def test_error_family() -> None:
    assert issubclass(NotFoundError, FileNotFoundError) and issubclass(NotFoundError, ValueSimError)
    assert str(UnknownKeyError("unknown question code 'Q999'")) == "unknown question code 'Q999'"


def test_only_named_warnings_are_hidden() -> None:
    """`handled` hides the known noisy warnings and lets every other one through (a blanket filter hid a real
    deprecation in DSPy once)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with cli.handled():
            warnings.warn("Workbook contains no default style, apply openpyxl's default", UserWarning, stacklevel=1)
            warnings.warn("requires_permission_to_run is deprecated", DeprecationWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["requires_permission_to_run is deprecated"]


def test_resume_into_a_folder_that_does_not_exist_starts_the_run(bench_small: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed-before-it-began"
    r = invoke(
        "evaluate", "--data", bench_small, "--program", "majority", "--persons", 3, "--run-dir", run_dir,
        "--resume", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"]["n"] > 0
    assert (run_dir / "predictions.sqlite").exists()
    r = invoke("evaluate", "--data", bench_small, "--resume")
    assert r.exit_code == 1 and "--resume needs --run-dir" in r.output


def test_persons_per_country_are_reported(bench_small: Path, tmp_path: Path) -> None:
    r = invoke("evaluate", "--data", bench_small, "--program", "country", "--persons", 4, "--json")
    assert r.exit_code == 0, r.output
    params = json.loads(r.stdout)["params"]
    counts = dict(part.split(":") for part in params["persons_by_country"].split(","))
    assert params["n_persons"] == 4 and sum(map(int, counts.values())) == 4 and len(counts) == 4


def test_person_file_with_bom_and_decimal_codes(catalog, tmp_path: Path) -> None:
    from valuesim.data.person import load_person

    code = next(str(c) for c in catalog["Q1"].options)
    plain, bom = tmp_path / "plain.json", tmp_path / "bom.json"
    plain.write_text(json.dumps({"country": "USA", "answers": {"Q1": int(code)}}))
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"country": "USA", "answers": {"Q1": f"{code}.0"}}).encode())
    a, b = load_person(plain, catalog), load_person(bom, catalog)
    assert a["known"] == b["known"] == {"Q1": int(code)}
    assert a["profile"] == b["profile"]
