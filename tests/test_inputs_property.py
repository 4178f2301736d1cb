"""Property-based tests (Hypothesis) of every reader of a file or cell a user or a damaged run hands over: for any
input, the reader returns a result or raises a ValueSimError (one line for the CLI), never another exception.

Targets: person files (bytes -> load_person, JSON values -> parse_person, arbitrary `answers`), run.json
(bytes -> claim), valuesim.json of a saved program (JSON -> load_program) and the CSV/xlsx cell parsers
(LabelMapper for labelled cells, _map_codes for numeric columns). At most EXAMPLES examples per target, no deadline,
no example database (no .hypothesis folder in the project): each target takes a few seconds.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from valuesim.data.catalog import NUMERIC_ITEMS, Catalog
from valuesim.data.ingest import IngestReport, _map_codes
from valuesim.data.labels import LabelMapper, _question_choices, plausible_range
from valuesim.data.person import load_person, parse_person
from valuesim.errors import ValueSimError
from valuesim.programs import PROGRAMS
from valuesim.programs.saved import load_program, save_program
from valuesim.programs.valuesim import ValueSim
from valuesim.run.folder import claim

EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------------------------------------
# Strategies

NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -5, 34, 1e30, -1e30, 1962, 130, 131, 2101, 10**4000, 1.5, -0.0]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=40))
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
QUESTION_CODES = st.sampled_from(["Q1", "Q46", "Q164", "Q223", "Q260", "Q261", "Q262", "Q270", "Q274", "Q275", "Q290"])


def option_texts(catalog: Catalog) -> st.SearchStrategy[str]:
    """Texts near real answers: labels as they are, changed in case or spacing, cut, with noise around."""
    labels = sorted({label for q in catalog for label in q.options.values()})[:400]
    label = st.sampled_from(labels)
    return st.one_of(
        label,
        label.map(str.upper),
        label.map(lambda s: f"  {s}. "),
        st.tuples(label, st.integers(0, 20)).map(lambda t: t[0][: t[1]]),
        st.tuples(st.text(max_size=5), label, st.text(max_size=5)).map("".join),
        st.from_regex(r"-?[0-9٣²]{1,30}(\.[0-9]{1,3})?", fullmatch=True),
        st.sampled_from(["Don't know", "No answer", "-1", "-2.0", "nan", "inf", "1 Never justifiable", "usa: x"]),
        st.just("9" * 5000),
        st.text(),
    )


def answers(catalog: Catalog) -> st.SearchStrategy[dict]:
    keys = st.one_of(QUESTION_CODES, st.text(max_size=12), st.sampled_from(["q1", "Q0", "Q291", "Q1 ", "Ｑ1"]))
    values = st.one_of(option_texts(catalog), NUMBERS, JSON)
    return st.dictionaries(keys, values, max_size=8)


def person_objects(catalog: Catalog) -> st.SearchStrategy[dict]:
    country = st.one_of(st.sampled_from(["USA", "usa", " JPN ", "XYZ", "", "US", "U5A"]), JSON)
    fields = {"country": country, "answers": st.one_of(answers(catalog), JSON), "id": st.one_of(SCALARS, JSON)}
    return st.fixed_dictionaries({}, optional=fields)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A fresh folder per Hypothesis example (tmp_path is one per test, shared by its examples)."""
    folder = Path(tempfile.mkdtemp(prefix="valuesim-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def fresh(parent: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=parent))


def result_or_valuesim_error(call, *args) -> Any:
    """The call's result, or None when it raised a ValueSimError (whose message must be one short-ish line)."""
    try:
        return call(*args)
    except ValueSimError as e:
        message = str(e)
        assert message and "\n" not in message, repr(message[:300])
        assert len(message) < 2_000, message[:300]  # a bad value is quoted, not echoed whole
        return None


# ---------------------------------------------------------------------------------------------------------------
# Person files


@FUZZ
@given(raw=st.one_of(st.binary(max_size=3000), JSON.map(lambda v: json.dumps(v).encode())))
def test_load_person_any_bytes(catalog: Catalog, scratch: Path, raw: bytes) -> None:
    path = fresh(scratch) / "person.json"
    path.write_bytes(raw)
    result_or_valuesim_error(load_person, path, catalog)


@FUZZ
@given(data=JSON)
def test_parse_person_any_json(catalog: Catalog, data: Any) -> None:
    result_or_valuesim_error(parse_person, data, catalog, "person.json")


@FUZZ
@given(data=st.data())
def test_parse_person_any_answers(catalog: Catalog, data: st.DataObject) -> None:
    person = data.draw(person_objects(catalog))
    got = result_or_valuesim_error(parse_person, person, catalog, "person.json")
    if got is None:
        return
    for code, answer in got["known"].items():  # whatever was accepted is an answer the catalog can state
        assert isinstance(answer, int) and not isinstance(answer, bool)
        if code in NUMERIC_ITEMS:
            low, high = plausible_range(code)
            assert low <= answer <= high
        else:
            assert answer in catalog[code].options_for(got["country"])


@FUZZ
@given(code=st.sampled_from(sorted(NUMERIC_ITEMS)), value=st.one_of(NUMBERS, st.text(max_size=30)))
def test_free_numbers_are_range_checked(catalog: Catalog, code: str, value: Any) -> None:
    got = result_or_valuesim_error(parse_person, {"country": "USA", "answers": {code: value}}, catalog, "p.json")
    low, high = plausible_range(code)
    if isinstance(value, float | int) and not isinstance(value, bool):
        whole = isinstance(value, int) or (math.isfinite(value) and value.is_integer())
        plausible = whole and low <= value <= high
        assert (got is not None) == plausible, (value, got)


# ---------------------------------------------------------------------------------------------------------------
# run.json

IDENTITY = {"program": "knn", "settings": {"k": 5}, "history": 232, "seed": 0}


@FUZZ
@given(
    raw=st.one_of(
        st.binary(max_size=2000),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(st.sampled_from([*IDENTITY, "lm"]), JSON, max_size=5).map(lambda v: json.dumps(v).encode()),
        st.just(json.dumps(IDENTITY).encode()),
    )
)
def test_claim_any_run_json(scratch: Path, raw: bytes) -> None:
    folder = fresh(scratch)
    (folder / "run.json").write_bytes(raw)

    def run() -> bool:
        with claim(folder, IDENTITY):
            return True

    got = result_or_valuesim_error(run)
    if raw == json.dumps(IDENTITY).encode():
        assert got  # the same identity resumes
    assert (folder / "run.json").read_bytes() == raw  # a refused folder keeps its run.json as it was


# ---------------------------------------------------------------------------------------------------------------
# valuesim.json of a saved program


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """program.json of a real save (a ValueSim), to pair with arbitrary valuesim.json files."""
    folder = save_program(ValueSim(backstory_words=80), "valuesim", tmp_path_factory.mktemp("saved") / "program")
    return (folder / "program.json").read_bytes()


SETTING_NAMES = ["backstory_words", "analysis_tokens", "k", "threshold", "embedder", "min_hits", "cache_size"]
META = st.fixed_dictionaries(
    {"program": st.one_of(st.sampled_from(sorted(PROGRAMS)), JSON)},
    optional={
        "settings": st.one_of(st.dictionaries(st.one_of(st.sampled_from(SETTING_NAMES), st.text()), JSON), JSON),
        "lm": JSON,
        "dspy": JSON,
    },
)


@FUZZ
@given(meta=st.one_of(META, JSON), as_bytes=st.one_of(st.none(), st.binary(max_size=500)))
def test_load_program_any_valuesim_json(scratch: Path, saved_state: bytes, meta: Any, as_bytes: bytes | None) -> None:
    folder = fresh(scratch)
    (folder / "program.json").write_bytes(saved_state)
    (folder / "valuesim.json").write_bytes(json.dumps(meta).encode() if as_bytes is None else as_bytes)
    result_or_valuesim_error(load_program, folder)


# ---------------------------------------------------------------------------------------------------------------
# CSV/xlsx cells

CELL_QUESTIONS = ["Q1", "Q46", "Q48", "Q112", "Q223", "Q261", "Q262", "Q270", "Q274", "Q275"]
CELLS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(), st.sampled_from(["7 ²", "²", "٣", "٣ x", "9" * 5000]))


@pytest.fixture(scope="module")
def mappers(catalog: Catalog) -> dict[str, LabelMapper]:
    return {q: LabelMapper(q, _question_choices(catalog[q])) for q in CELL_QUESTIONS}


@FUZZ
@given(code=st.sampled_from(CELL_QUESTIONS), cell=st.data())
def test_label_cell_any_value(catalog: Catalog, mappers: dict[str, LabelMapper], code: str, cell) -> None:
    value = cell.draw(st.one_of(CELLS, option_texts(catalog)))
    known, answer = mappers[code](value)  # a labelled cell never raises: unknown labels are reported, not errors
    assert isinstance(known, bool)
    if answer is not None:
        assert known and isinstance(answer, int)
        if code in NUMERIC_ITEMS:
            low, high = plausible_range(code)
            assert low <= answer <= high
        else:
            assert str(answer) in _question_choices(catalog[code]) and answer >= 0


@FUZZ
@given(code=st.sampled_from(CELL_QUESTIONS), cells=st.lists(CELLS, min_size=1, max_size=4), collect=st.booleans())
def test_numeric_cells_any_value(catalog: Catalog, code: str, cells: list, collect: bool) -> None:
    question = catalog[code]
    report = IngestReport()
    column = pd.Series(cells, dtype=object)
    got = result_or_valuesim_error(_map_codes, column, code, question, None, Path("wvs.csv"), report, collect)
    if got is not None:
        codes, known = got
        assert len(codes) == len(known) == len(cells)
        if code in NUMERIC_ITEMS:
            low, high = plausible_range(code)
            assert all(low <= c <= high for c in codes[known])
