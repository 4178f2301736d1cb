"""The synthetic WVS-7 folder (valuesim.data.synthetic) stands in for the licensed data: it builds with every
answered cell mapped, every answer renders as a statement, its folds follow the protocol, and its labelled and
numeric layouts give the same codes. Runs whether or not the real files are there."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from valuesim.data.benchmark import Benchmark, build, read_folds
from valuesim.data.catalog import COUNTRY_SPECIFIC, Catalog
from valuesim.data.ingest import read_wvs_dir
from valuesim.data.synthetic import write_synthetic_wvs


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    return {
        "xlsx": write_synthetic_wvs(root / "xlsx", per_country=30, seed=3),
        "csv": write_synthetic_wvs(root / "csv", per_country=30, seed=3, xlsx=False, csv=True),
    }


def test_builds_with_every_answer_mapped(folders, tmp_path: Path) -> None:
    manifest = build(folders["xlsx"], tmp_path / "bench")
    assert manifest["respondents"] == 120 and manifest["ingest"]["mapped_share"] == 1.0
    assert manifest["ingest"]["missing"] > 0  # missing-answer labels are there and read as missing
    assert set(manifest["countries"]) == {"USA", "JPN", "COL", "BGD"}
    assert len(Benchmark(tmp_path / "bench").examples("values", "dev", 1, persons=4, questions=3)) == 12


def test_labelled_files_carry_the_real_exports_mess(folders) -> None:
    files = sorted((folders["xlsx"] / "countries").glob("*.xlsx"))
    cells = pd.concat([pd.read_excel(f, dtype=object, engine="calamine") for f in files])
    values = set(cells.stack().astype(str))
    assert {"Don´t know", "No answer", "Not asked", "Missing; Not available"} <= values
    assert "Strongly agree" in values or "Agree strongly" in values  # release variants of one option
    assert any(v[:2] in ("1 ", "10") and " " in v and not v.replace(" ", "").isdigit() for v in values)
    headers = [set(pd.read_excel(f, nrows=0, engine="calamine").columns) for f in files]
    assert len({len(h) for h in headers}) > 1  # column sets differ a little between countries
    assert all(c.split(":")[0] == "D_INTERVIEW" or ": " in c for h in headers for c in h)


def test_labelled_and_numeric_layouts_give_the_same_codes(folders) -> None:
    catalog = Catalog.from_wvs(folders["xlsx"])
    labelled, _ = read_wvs_dir(folders["xlsx"], catalog)
    numeric, _ = read_wvs_dir(folders["csv"], catalog)
    labelled = labelled.set_index("person_id").sort_index()
    numeric = numeric.set_index("person_id").sort_index().loc[labelled.index]
    shared = [q for q in catalog.codes if labelled[q].notna().any()]  # columns dropped in one country stay NA
    for q in shared:
        both = labelled[q].notna()
        assert (labelled.loc[both, q] == numeric.loc[both, q]).all(), q


def test_every_answer_renders_and_per_country_options_map(folders) -> None:
    catalog = Catalog.from_wvs(folders["xlsx"])
    table, _ = read_wvs_dir(folders["xlsx"], catalog)
    for q in catalog.codes:
        for code in table[q].dropna().unique():
            assert catalog[q].statement(int(code))
    for q in COUNTRY_SPECIFIC:
        for country, rows in table.groupby("country"):
            own = set(catalog[q].options_for(country))
            assert set(rows[q].dropna().astype(int)) <= own, (q, country)


def test_folds_follow_the_protocol(folders) -> None:
    catalog = Catalog.from_wvs(folders["xlsx"])
    folds = read_folds(folders["xlsx"] / "protocol", catalog)  # validates disjointness and codes
    tests = [set(test) for _, test in folds.values()]
    assert len(folds) == 5 and all(len(t) == 58 for t in tests)
    assert set().union(*tests) == set(catalog.codes)
    assert all(len(train) == 232 for train, _ in folds.values())
    assert json.loads((folders["xlsx"] / "codebook.json").read_text())["Q1"]["choices"]["-1"] == "Don't know"


def test_answers_carry_signal(folders, tmp_path: Path) -> None:
    """Neighbours share answers (two latent traits): kNN beats the global majority, as on the real data."""
    from valuesim.evaluate import evaluate
    from valuesim.programs import PROGRAMS

    build(folders["xlsx"], tmp_path / "bench")
    bench = Benchmark(tmp_path / "bench")
    examples = bench.examples("values", "dev", 1, history=232)
    acc = {}
    for name in ("majority", "knn"):
        program = PROGRAMS[name].from_benchmark(bench)
        acc[name] = evaluate(program, examples, bench.catalog, tmp_path / name, progress=False).metrics["accuracy"]
    assert acc["knn"] > acc["majority"] + 0.03, acc
