"""Damaged or hostile input files through the command line: person files for `simulate --person`, a run folder's
run.json for `evaluate --run-dir`, a saved program's valuesim.json for `--program <folder>`. Each ends in exit code 1
and exactly one short line on stderr naming the file or field, never a traceback."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.data.person import MAX_PERSON_BYTES
from valuesim.programs.saved import save_program
from valuesim.programs.valuesim import ValueSim

QUOTED = 200  # an error line quotes at most ~200 characters of a bad value
MAX_LINE = 600  # characters of an error line, besides the test's own folder


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments: str, folder: Path | None = None) -> str:
    """Exit code 1, one short line on stderr (nothing on stdout), no traceback, every fragment in it, no bad value
    echoed whole (no run of more than QUOTED equal characters)."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    err = result.stderr.strip()
    assert "Traceback" not in result.output and "Traceback" not in err
    assert len(err.splitlines()) == 1, err[:1000]
    assert err.startswith("Error: "), err[:1000]
    assert len(err.replace(str(folder), "") if folder else err) < MAX_LINE, err[:1000]
    assert not re.search(rf"(.)\1{{{QUOTED}}}", err), err[:1000]
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def person(answers: dict) -> str:
    return json.dumps({"country": "USA", "answers": answers}, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------------------
# simulate --person

# name -> (writes the person "file" under a folder and returns its path, fragments the error names)
PersonCase = Callable[[Path], Path]


def write(name: str, data: str | bytes) -> PersonCase:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    return make


PERSON_CASES: dict[str, tuple[PersonCase, list[str]]] = {
    "not-utf8": (write("latin1.json", person({"Q1": "Très important"}).encode("latin-1")), ["latin1.json", "UTF-8"]),
    "utf16": (write("utf16.json", person({"Q1": 1}).encode("utf-16")), ["utf16.json", "UTF-8"]),
    "deeply-nested": (write("nested.json", "[" * 100_000 + "]" * 100_000), ["nested.json", "nested deeper"]),
    "nested-in-answers": (
        write("deep.json", person({"Q1": 1})[:-2] + ', "x": ' + "[" * 40 + "]" * 40 + "}}"),
        ["deep.json", "nested deeper"],
    ),
    "age-negative": (write("age.json", person({"Q262": -5})), ["age.json", "answers.Q262", "-5"]),
    "age-huge": (write("age.json", person({"Q262": 1e30})), ["age.json", "answers.Q262", "1e+30"]),
    "age-nan": (write("age.json", '{"country": "USA", "answers": {"Q262": NaN}}'), ["answers.Q262", "nan"]),
    "age-inf": (write("age.json", '{"country": "USA", "answers": {"Q262": Infinity}}'), ["answers.Q262", "inf"]),
    "age-text-huge": (write("age.json", person({"Q262": "9" * 400})), ["answers.Q262"]),
    "year-of-birth": (write("born.json", person({"Q261": 1492})), ["answers.Q261", "1850", "2100"]),
    "age-fraction": (write("age.json", person({"Q262": 34.5})), ["answers.Q262", "whole number from 0 to 130", "34.5"]),
    "5000-digit-code": (write("big.json", '{"country": "USA", "answers": {"Q1": ' + "9" * 5000 + "}}"), ["big.json"]),
    "4000-digit-code": (write("big.json", '{"country": "USA", "answers": {"Q1": ' + "9" * 4000 + "}}"), ["answers.Q1"]),
    "a-directory": (lambda folder: folder, ["is a folder"]),
    "dev-zero": (lambda folder: Path("/dev/zero"), ["/dev/zero", f"{MAX_PERSON_BYTES:,} bytes"]),
    "5mb-string-field": (write("big.json", person({"Q1": "x" * 5_000_000})), ["big.json", "larger than"]),
    "900kb-string-field": (write("long.json", person({"Q1": "x" * 900_000})), ["long.json", "answers.Q1", "xxx"]),
    "900kb-question-code": (write("long.json", person({"Q" * 900_000: 1})), ["long.json", "unknown question code"]),
    "900kb-country": (write("long.json", json.dumps({"country": "U" * 900_000})), ["long.json", "field 'country'"]),
    "900kb-id": (write("long.json", json.dumps({"country": "USA", "id": "i" * 900_000})), ["field 'id'"]),
    "empty": (write("empty.json", ""), ["empty.json", "not valid JSON"]),
    "not-found": (lambda folder: folder / "nobody.json", ["nobody.json", "not found"]),
}


@pytest.mark.parametrize("case", list(PERSON_CASES))
def test_simulate_refuses_a_bad_person_file(bench_small: Path, tmp_path: Path, case: str) -> None:
    make, fragments = PERSON_CASES[case]
    path = make(tmp_path)
    result = invoke("simulate", "--person", path, "--question", "Q46", "--data", bench_small, "--lm", "dummy")
    err = one_line_error(result, *fragments, folder=tmp_path)
    if case == "5mb-string-field":
        assert len(err.replace(str(tmp_path), "")) < 300


def test_a_plausible_person_file_still_works(bench_small: Path, tmp_path: Path) -> None:
    path = tmp_path / "anna.json"
    path.write_bytes(b"\xef\xbb\xbf" + person({"Q262": 34, "Q261": "1990", "Q270": 3.0, "Q1": 1}).encode())  # a BOM
    result = invoke("simulate", "--person", path, "--question", "Q46", "--program", "country", "--data", bench_small)
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------------------------------------
# evaluate --run-dir with a damaged run.json

RUN_JSON = {
    "list": (b"[]", ["run.json", "not an object"]),
    "junk": (b"{program: knn", ["run.json", "not valid JSON"]),
    "empty": (b"", ["run.json", "empty"]),
    "not-utf8": (b'{"program": "\xff"}', ["run.json", "UTF-8"]),
    "nested": (b"[" * 50 + b"]" * 50, ["run.json", "nested deeper"]),
    "huge-value": (json.dumps({"program": "x" * 100_000}).encode(), ["holds another run", "program:"]),
}


@pytest.mark.parametrize("case", list(RUN_JSON))
def test_evaluate_refuses_a_damaged_run_json(bench_small: Path, tmp_path: Path, case: str) -> None:
    raw, fragments = RUN_JSON[case]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_bytes(raw)
    args = ["--data", bench_small, "--program", "majority", "--persons", 2, "--run-dir", run_dir, "--resume"]
    one_line_error(invoke("evaluate", *args), *fragments, folder=tmp_path)
    assert (run_dir / "run.json").read_bytes() == raw  # left as it was


def test_run_dir_a_directory_as_run_json(bench_small: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "run.json").mkdir(parents=True)
    args = ["--data", bench_small, "--program", "majority", "--persons", 2, "--run-dir", run_dir]
    one_line_error(invoke("evaluate", *args), "run.json", "is a folder", folder=tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# --program <saved folder> with a damaged valuesim.json

META = {
    "settings-a-list": ({"program": "valuesim", "settings": [1, 2]}, ["valuesim.json", "field 'settings'"]),
    "settings-text": ({"program": "valuesim", "settings": "x" * 10_000}, ["valuesim.json", "field 'settings'"]),
    "unknown-setting": ({"program": "valuesim", "settings": {"nope": 1}}, ["valuesim.json", "nope"]),
    "wrong-type": ({"program": "valuesim", "settings": {"backstory_words": "many"}}, ["valuesim.json", "backstory"]),
    "odd-key": ({"program": "valuesim", "settings": {"a\nb" * 1000: 1}}, ["valuesim.json", "field 'settings'"]),
    "program-a-list": ({"program": ["valuesim"], "settings": {}}, ["valuesim.json", "unknown program"]),
    "statistical": ({"program": "knn", "settings": {}}, ["valuesim.json", "'knn'"]),
    "not-an-object": ([], ["valuesim.json", "corrupt"]),
}


@pytest.fixture
def saved_program(tmp_path: Path) -> Path:
    return save_program(ValueSim(backstory_words=80), "valuesim", tmp_path / "program", {"backstory_words": 80})


@pytest.mark.parametrize("command", ["simulate", "evaluate"])
@pytest.mark.parametrize("case", list(META))
def test_a_damaged_valuesim_json(
    bench_small: Path, saved_program: Path, tmp_path: Path, command: str, case: str
) -> None:
    meta, fragments = META[case]
    (saved_program / "valuesim.json").write_text(json.dumps(meta))
    args = ["--program", saved_program, "--data", bench_small, "--lm", "dummy"]
    if command == "simulate":
        (tmp_path / "anna.json").write_text(person({"Q1": 1}))
        args += ["--person", tmp_path / "anna.json", "--question", "Q46"]
    else:
        args += ["--persons", 2, "--questions", 2, "--run-dir", tmp_path / "run"]
    one_line_error(invoke(command, *args), str(saved_program), *fragments, folder=tmp_path)
