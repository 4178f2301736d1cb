"""The synthetic WVS-7 folder (valuesim.testing.synthetic) stands in for the licensed data: it builds with every
answered cell mapped, every answer renders as a statement, its folds follow the protocol, and its labelled and
numeric layouts give the same codes. Runs whether or not the real files are there."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from valuesim.data import statements
from valuesim.data.aliases import ALIASES
from valuesim.data.benchmark import Benchmark
from valuesim.data.build import build, read_folds
from valuesim.data.catalog import COUNTRY_SPECIFIC, Catalog
from valuesim.data.ingest import read_wvs_dir
from valuesim.testing.__main__ import main
from valuesim.testing.synthetic import CSV_NAME, write_synthetic_wvs
from valuesim.testing.synthetic_full import SHAPE, sample_sizes, write_full


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
    values = {v for v in cells.stack().dropna().astype(str) if isinstance(v, str)}  # pandas 3 keeps NaN in astype(str)
    assert {
        "Don't know",
        "Don´t know",
        "No answer",
        "Not asked",
        "Not asked in survey",
        "Missing; Not available",
    } <= values
    assert "Strongly agree" in values or "Agree strongly" in values  # release variants of one option
    # a release's own spelling of an option ("Incomes should be made more equal", codebook "Incomes more equal")
    spelt = {c.split(":")[0]: set(cells[c].dropna().astype(str).str.lower()) for c in cells.columns}
    assert any(spelt.get(q, set()) & {k.lower() for k in aliases} for q, aliases in ALIASES.items())
    assert {"USA: Labour Party", "Labour Party"} <= values  # per-country options with and without the prefix
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


def test_every_answer_renders_and_per_country_options_map(folders, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fallback(question, answer, label):
        raise AssertionError(f"{question.code}={answer} ({label!r}) has no statement table")

    monkeypatch.setattr(statements, "_fallback", no_fallback)
    catalog = Catalog.from_wvs(folders["xlsx"])
    table, _ = read_wvs_dir(folders["xlsx"], catalog)
    for q in catalog:
        every = {c for options in [q.options, *q.country_options.values()] for c in options}
        assert set(table[q.code].dropna().astype(int)) <= every or q.open, q.code
        for code in every:  # every option of the codebook, answered or not
            assert q.statement(code).endswith("."), (q.code, code)
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
    from valuesim.programs import PROGRAMS
    from valuesim.run.predict import evaluate

    build(folders["xlsx"], tmp_path / "bench")
    bench = Benchmark(tmp_path / "bench")
    examples = bench.examples("values", "dev", 1, history=232)
    acc = {}
    for name in ("majority", "knn"):
        program = PROGRAMS[name].from_benchmark(bench)
        acc[name] = evaluate(program, examples, tmp_path / name, progress=False).metrics["accuracy"]
    assert acc["knn"] > acc["majority"] + 0.03, acc


def test_real_layout_details(folders) -> None:
    """One sheet "Data" with shared strings like the real exports; interview ids ISO numeric + 07 + number; the
    codebook's country tables; questions.json without missing codes or per-country lists."""
    usa = folders["xlsx"] / "countries" / "USA.xlsx"
    with zipfile.ZipFile(usa) as z:
        assert "xl/sharedStrings.xml" in z.namelist() and 'name="Data"' in z.read("xl/workbook.xml").decode()
    raw = pd.read_excel(usa, dtype=object, engine="calamine")
    ids = raw["D_INTERVIEW: Interview ID"].astype(int)
    assert ids.between(840_070_001, 840_079_999).all() and ids.is_unique
    assert set(raw["B_COUNTRY: ISO 3166-1 numeric country code"]) == {"United States"}
    codebook = json.loads((folders["xlsx"] / "codebook.json").read_text())
    assert codebook["B_COUNTRY"]["choices"]["840"] == "United States" and codebook["B_COUNTRY_ALPHA"]["choices"]["BGD"]
    assert (
        codebook["Q223"]["choices"]["840001"].startswith("USA: ") and codebook["Q290"]["choices"]["50001"][:4] == "BD: "
    )
    questions = json.loads((folders["xlsx"] / "questions.json").read_text())
    assert set(questions) == {f"Q{n}" for n in range(1, 291)}
    assert all(0 <= int(c) < 1000 for q in questions.values() for c in q["options"])


def test_both_layouts_in_one_folder_hold_different_countries(tmp_path: Path) -> None:
    folder = write_synthetic_wvs(tmp_path / "both", countries=("DEU", "FRA", "KEN"), per_country=8, xlsx=True, csv=True)
    assert sorted(p.name for p in (folder / "countries").iterdir()) == ["DEU.xlsx", "FRA.xlsx"]
    assert set(pd.read_csv(folder / CSV_NAME)["B_COUNTRY_ALPHA"]) == {"KEN"}
    table, report = read_wvs_dir(folder, Catalog.from_wvs(folder))  # no duplicate ids between the layouts
    assert report.respondents == 24 and report.mapped_share == 1.0
    assert table.groupby("country").size().to_dict() == {"DEU": 8, "FRA": 8, "KEN": 8}


def test_full_size_layout_is_vectorized(tmp_path: Path) -> None:
    """66 countries in the numeric layout, 150 respondents each."""
    folder = write_synthetic_wvs(tmp_path / "big", countries=66, per_country=150, xlsx=False, csv=True)
    frame = pd.read_csv(folder / CSV_NAME, usecols=["B_COUNTRY_ALPHA", "D_INTERVIEW", "Q1", "Q223"])
    assert len(frame) == 9900 and frame["B_COUNTRY_ALPHA"].nunique() == 66 and frame["D_INTERVIEW"].is_unique
    assert (frame["Q1"] < 0).mean() < 0.1  # answered mostly; negative codes for the missing
    assert Catalog.from_wvs(folder)["Q223"].country_options.keys() == set(frame["B_COUNTRY_ALPHA"])


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole-WVS-7 generator at a small size: 12 of its countries, 3,000 respondents."""
    return write_full(tmp_path_factory.mktemp("whole"), countries=12, total=3000, seed=2)


def test_whole_wvs7_has_the_official_files_shape(whole: Path) -> None:
    frame = pd.read_csv(whole / CSV_NAME)
    assert frame.shape == (3000, 600)  # the official file's width
    sizes = frame["B_COUNTRY_ALPHA"].value_counts()
    assert list(sizes.index.sort_values()) == sorted(SHAPE["countries"][:12]) and sizes.max() > 1.5 * sizes.min()
    assert sample_sizes(66, 97_220, 0).sum() == 97_220 and sample_sizes(66, 97_220, 0).min() >= 800
    # missing answers vary by question and country, some questions not asked in a whole country
    missing = (frame[[f"Q{n}" for n in range(1, 260)]] < 0).groupby(frame["B_COUNTRY_ALPHA"]).mean()
    assert missing.stack().quantile(0.9) > 4 * missing.stack().median() > 0
    assert (missing == 1).any().any() and missing.mean(axis=1).max() > 3 * missing.mean(axis=1).min()
    assert (frame["Y_001"].isna() & frame["Q1"].notna()).any()  # empty cells in the indices: NaN, not "nan"


def test_whole_wvs7_per_country_options_differ_and_render(whole: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fallback(question, answer, label):
        raise AssertionError(f"{question}={answer} ({label!r}) has no statement table")

    monkeypatch.setattr(statements, "_fallback", no_fallback)
    catalog = Catalog.from_wvs(whole)
    for code in COUNTRY_SPECIFIC:
        lists = {c: tuple(sorted(o.values())) for c, o in catalog[code].country_options.items()}
        assert len(lists) == 12 and len(set(lists.values())) > 3, code  # countries have their own lists
        assert len({len(names) for names in lists.values()}) > 1, code  # of different lengths
        for options in catalog[code].country_options.values():
            assert all(catalog[code].statement(c).endswith(".") for c in options)


def test_whole_wvs7_builds_with_every_answer_mapped(whole: Path, tmp_path: Path) -> None:
    manifest = build(whole, tmp_path / "bench")
    assert manifest["respondents"] == 3000 and manifest["ingest"]["mapped_share"] == 1.0
    assert len(manifest["countries"]) == 12


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    usage = subprocess.run(
        [sys.executable, "-m", "valuesim.testing", "--help"], capture_output=True, text=True, check=True
    )
    assert "--per-country" in usage.stdout and "--layout" in usage.stdout
    main([str(tmp_path / "cli"), "--countries", "2", "--per-country", "5", "--layout", "csv", "--seed", "1"])
    assert "10 respondents in 2 countries" in capsys.readouterr().out
    assert (
        len(pd.read_csv(tmp_path / "cli" / CSV_NAME)) == 10
        and len(list((tmp_path / "cli" / "protocol").iterdir())) == 5
    )
    assert "--full" in usage.stdout and "--respondents" in usage.stdout
    main([str(tmp_path / "full"), "--full", "--countries", "3", "--respondents", "90"])
    assert "90 respondents in 3 countries" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "full" / CSV_NAME).shape == (90, 600)
