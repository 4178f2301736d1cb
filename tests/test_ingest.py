"""valuesim.data.ingest: labelled exports and the official numeric CSV -> one table of codebook codes."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pandas as pd
import pytest

from valuesim.data.aliases import MISSING_LABELS
from valuesim.data.catalog import COUNTRY_SPECIFIC
from valuesim.data.ingest import read_files, read_wvs_dir
from valuesim.data.labels import LabelMapper, _choices
from valuesim.data.raw import WVSFormatError, _read_raw

MISSING_CODES = (-1, -2, -4, -5)


@pytest.fixture(scope="module")
def labelled(wvs_small: Path, catalog, builds: Path):
    """The labelled fixture files read once: (codes table, report, raw sheets by file)."""
    cache = builds / "cache"  # shared with the session's builds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, report = read_wvs_dir(wvs_small, catalog, cache_dir=cache)
        raws = {Path(f): _read_raw(Path(f), cache) for f in report.files}
    return table, report, raws


def q_cols(catalog) -> list[str]:
    return list(catalog.codes)


def write_labelled_csv(path: Path, rows: list[dict]) -> Path:
    """A labelled export: header `CODE: label`, answer labels as text."""
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


HEAD = {
    "country": "B_COUNTRY_ALPHA: ISO 3166-1 alpha-3 country code",
    "id": "D_INTERVIEW: Interview ID",
    "Q1": "Q1: Important in life: Family",
    "Q33": "Q33: Jobs scarce: Men should have more right to a job than women",
    "Q35": "Q35: Problem if women have more income than husband",
    "Q39": "Q39: People who don't work turn lazy",
    "Q112": "Q112: Perceptions of corruption in the country",
    "Q223": "Q223: Which party would you vote for if there were a national election tomorrow",
    "Q288": "Q288: Scale of incomes",
    "Q290": "Q290: Ethnic group",
}


def row(country: str, interview: int, **answers) -> dict:
    return {HEAD["country"]: country, HEAD["id"]: interview, **{HEAD[q]: v for q, v in answers.items()}}


# ---------------------------------------------------------------------------------------------------------------
# The real labelled files


def test_labelled_files_map_every_answered_cell(labelled, catalog) -> None:
    table, report, _ = labelled
    assert report.respondents == len(table) == 4 * 40
    assert sorted(table["country"].unique()) == ["BGD", "COL", "JPN", "USA"]
    assert report.unmapped == []
    assert report.cells > 4 * 40 * 250  # most Q columns are answered
    assert report.mapped == report.cells - report.missing
    assert report.mapped_share == 1.0
    assert table["person_id"].is_unique
    assert set(table["urban"].dropna()) <= {1, 2}


def test_labelled_codes_are_options_of_the_respondents_country(labelled, catalog) -> None:
    """Every code is an option of its question as offered in the respondent's country (per-country items too)."""
    table, _, _ = labelled
    closed = [q for q in catalog if not q.open]
    wrong = []
    for country, group in table.groupby("country"):
        values = group[[q.code for q in closed]].astype("float64").to_numpy()
        for i, q in enumerate(closed):
            codes = {int(v) for v in values[:, i] if v == v}
            wrong += [(q.code, country, c) for c in codes - set(q.options_for(country))]
    assert wrong == []


def test_labels_shared_by_countries_map_to_the_respondents_country(labelled, catalog) -> None:
    """A per-country label without its prefix can name an option of several countries ("Labour Party"): the answer
    gets the code of the respondent's own country."""
    table, _, raws = labelled
    shared = 0
    for path, raw in raws.items():
        country = path.stem
        part = table[table["country"] == country].reset_index(drop=True)
        for q in sorted(COUNTRY_SPECIFIC):
            column = next((c for c in raw.columns if str(c).split(":", 1)[0] == q), None)
            if column is None:
                continue
            own = catalog[q].options_for(country)
            elsewhere = {
                bare(label)
                for other, options in catalog[q].country_options.items()
                if other != country
                for code, label in options.items()
                if code >= 1000
            }
            for label, code in zip(raw[column], part[q], strict=True):
                if pd.notna(code) and code >= 1000:
                    assert code in own, (country, q, label, code)
                    shared += bare(str(label)) in elsewhere
    assert shared > 0  # the fixture has such labels


def bare(label: str) -> str:
    return re.sub(r"^[A-Z]{2,4}:\s*", "", label).lower()


@pytest.mark.real_data  # the real codebook's labels
def test_per_country_labels_map_to_that_countrys_code(labelled) -> None:
    """ "Republican Party" is an option in several countries; a USA answer must get the USA code (840001)."""
    table, _, raws = labelled
    usa = next(raw for path, raw in raws.items() if path.stem == "USA")
    col = next(c for c in usa.columns if str(c).startswith("Q223:"))
    republican = usa[col].eq("USA: Republican Party").to_numpy()
    assert republican.any()
    codes = table.loc[table["country"] == "USA", "Q223"].to_numpy()
    assert set(codes[republican]) == {840001}


def test_missing_labels_become_na(labelled) -> None:
    table, report, raws = labelled
    assert report.missing > 0
    missing = {"don't know", "don´t know", "no answer", "not asked", "missing; not available"}
    for path, raw in raws.items():
        country = path.stem
        part = table[table["country"] == country].reset_index(drop=True)
        for column in raw.columns:
            code = str(column).split(":", 1)[0]
            if code not in part.columns or not code.startswith("Q"):
                continue
            was_missing = raw[column].map(lambda v: str(v).strip().lower() in missing).to_numpy()
            assert part.loc[was_missing, code].isna().all(), (country, code)


# ---------------------------------------------------------------------------------------------------------------
# The official cross-national CSV: bare codes, numeric answers, negative codes for missing


def official_csv(table: pd.DataFrame, raws: dict[Path, pd.DataFrame], catalog, path: Path) -> Path:
    """The labelled fixture rewritten in the official cross-national layout through the codebook codes."""
    frames = []
    for file, raw in raws.items():
        cols = {str(c).split(":", 1)[0].strip(): c for c in raw.columns}
        part = table[table["country"] == file.stem].reset_index(drop=True)
        out = pd.DataFrame(
            {
                "version": "6-0-0",
                "A_YEAR": 2018,
                "B_COUNTRY": 1,
                "B_COUNTRY_ALPHA": raw[cols["B_COUNTRY_ALPHA"]].to_numpy(),
                "D_INTERVIEW": raw[cols["D_INTERVIEW"]].astype(int).to_numpy(),
                "H_URBRURAL": part["urban"].fillna(-5).astype(int).to_numpy(),
            }
        )
        for i, q in enumerate(catalog.codes):
            if q not in cols:
                continue  # absent in this country's export: absent in the CSV too
            answered = raw[cols[q]].notna().to_numpy()
            codes = part[q].astype("float64").to_numpy()
            # answered but missing -> one of the negative codes; never answered -> empty cell
            values = [
                int(c) if c == c else (MISSING_CODES[(i + j) % 4] if answered[j] else None) for j, c in enumerate(codes)
            ]
            out[q] = pd.array(values, dtype="Int64")
        frames.append(out)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


def test_official_csv_gives_the_same_table(labelled, catalog, tmp_path: Path) -> None:
    table, report, raws = labelled
    csv = official_csv(table, raws, catalog, tmp_path / "WVS_Cross-National_Wave_7_csv_v6_0.csv")
    assert pd.read_csv(csv, nrows=0).columns[:5].tolist() == [
        "version",
        "A_YEAR",
        "B_COUNTRY",
        "B_COUNTRY_ALPHA",
        "D_INTERVIEW",
    ]
    numeric, numeric_report = read_wvs_dir(tmp_path, catalog)  # the CSV at the top of a WVS folder is found
    assert numeric_report.files == [str(csv)]
    assert numeric_report.unmapped == []
    assert numeric_report.mapped == report.mapped
    assert numeric_report.missing == report.missing
    assert numeric_report.mapped_share == 1.0
    lab = table.sort_values("person_id").reset_index(drop=True)
    num = numeric.sort_values("person_id").reset_index(drop=True)
    assert num["person_id"].tolist() == lab["person_id"].tolist()
    assert num["country"].tolist() == lab["country"].tolist()
    assert num["urban"].tolist() == lab["urban"].tolist()
    pd.testing.assert_frame_equal(num[q_cols(catalog)], lab[q_cols(catalog)])


def test_official_csv_semicolon_separated(catalog, tmp_path: Path) -> None:
    path = tmp_path / "wvs.csv"
    path.write_text("B_COUNTRY_ALPHA;D_INTERVIEW;Q1;Q2;Q262\nUSA;840070001;1;-2;45\nJPN;392070001;-1;3;-2\n")
    table, report = read_files([path], catalog)
    assert table["person_id"].tolist() == ["JPN-392070001", "USA-840070001"]  # countries in code order
    assert table["Q1"].tolist() == [pd.NA, 1]
    assert table["Q2"].tolist() == [3, pd.NA]
    assert table["Q262"].tolist() == [pd.NA, 45]
    assert (report.mapped, report.missing) == (3, 3)


def test_official_csv_code_of_another_country_is_an_error(catalog, tmp_path: Path) -> None:
    """716019 is Zimbabwe's "Republican Party": not an answer a USA respondent can give."""
    path = tmp_path / "wvs.csv"
    path.write_text("B_COUNTRY_ALPHA,D_INTERVIEW,Q1,Q223\nUSA,840070001,1,840001\nUSA,840070002,1,716019\n")
    with pytest.raises(WVSFormatError, match=r"Q223.*716019"):
        read_files([path], catalog)
    table, report = read_files([path], catalog, collect_unknown=True)
    assert table["Q223"].tolist() == [840001, pd.NA]
    assert [(u.column, u.value, u.count) for u in report.unmapped] == [("Q223", "716019", 1)]


def test_official_csv_unknown_code_is_an_error(catalog, tmp_path: Path) -> None:
    path = tmp_path / "wvs.csv"
    path.write_text("B_COUNTRY_ALPHA,D_INTERVIEW,Q1\nUSA,840070001,7\n")
    with pytest.raises(WVSFormatError) as err:
        read_files([path], catalog)
    assert str(path) in str(err.value) and "Q1" in str(err.value) and "'7'" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# Label variants between releases


@pytest.mark.real_data  # the real codebook's labels
def test_label_variants_map_to_codebook_codes(catalog, tmp_path: Path) -> None:
    path = write_labelled_csv(
        tmp_path / "variants.csv",
        [
            row("USA", 1, Q1="Very important", Q33="Neither agree or disagree", Q35="Agree strongly",
                Q39="Neither agree nor disagree", Q112="1 There is no corruption in my country",
                Q223="USA: Republican Party", Q288="Fourth step{4}", Q290="US: White, non-Hispanic"),
            row("USA", 2, Q1="Don´t know", Q33="Agree strongly", Q35="Strongly agree", Q39="Strongly disagree",
                Q112="10 There is abundant corruption in my country", Q223="USA: Democratic Party",
                Q288="Lower step{1}", Q290="Not asked"),
            row("COL", 3, Q1="VERY  IMPORTANT ", Q33="Strongly agree", Q35="Disagree strongly", Q39="Disagree strongly",
                Q112="5", Q223="No answer", Q288="Tenth step", Q290="CO: White"),
        ],
    )  # fmt: skip
    table, report = read_files([path], catalog)
    by_id = table.set_index("person_id")
    assert by_id.loc["USA-1", ["Q1", "Q33", "Q35", "Q39", "Q112", "Q288"]].tolist() == [1, 3, 1, 3, 1, 4]
    assert by_id.loc["USA-2", ["Q33", "Q35", "Q39", "Q112", "Q288"]].tolist() == [1, 1, 5, 10, 1]
    assert by_id.loc["COL-3", ["Q1", "Q33", "Q35", "Q39", "Q112", "Q288"]].tolist() == [1, 1, 5, 5, 5, 10]
    assert by_id.loc["USA-1", "Q223"] == 840001 and by_id.loc["USA-2", "Q223"] == 840002
    assert catalog["Q290"].options_for("USA")[by_id.loc["USA-1", "Q290"]] == "White, non-Hispanic"
    assert catalog["Q290"].options_for("COL")[by_id.loc["COL-3", "Q290"]] == "White"
    assert (
        pd.isna(by_id.loc["USA-2", "Q1"])
        and pd.isna(by_id.loc["USA-2", "Q290"])
        and pd.isna(by_id.loc["COL-3", "Q223"])
    )
    assert report.mapped_share == 1.0 and report.missing == 3


# Variants of options whose labels both codebooks share (the synthetic one takes them from the same tables), then
# variants of the real codebook's own labels.
@pytest.mark.parametrize(
    ("question", "label", "code"),
    [
        ("Q33", "Neither agree or disagree", 3),  # codebook: "Neither agree nor disagree"
        ("Q39", "Neither agree nor disagree", 3),  # codebook: "Neither agree or disagree"
        ("Q35", "Agree strongly", 1),  # codebook: "Strongly agree"
        ("Q33", "Strongly agree", 1),  # codebook: "Agree strongly"
        ("Q288", "Fourth step{4}", 4),
        ("Q106", "Incomes should be made more equal", 1),
        ("Q106", "10", 10),  # a digit for an end-labelled point (codebook: "Larger income differences")
        ("Q48", "1", 1),
        ("Q164", "10 Very important", 10),
        ("Q112", "7", 7),
        ("Q1", "Don´t know", None),
        ("Q1", "Not asked in survey", None),
        *[
            pytest.param(*case, marks=pytest.mark.real_data)
            for case in [
                ("Q288", "Eight step", 8),  # codebook: "Eight  step"
                ("Q112", "1 There is no corruption in my country", 1),
                ("Q223", "USA: Republican Party", 840001),  # also a BLR, TUN and ZWE option without the prefix
                ("Q223", "BGD: Bangladesh Awami League (BAL)", 50001),
                ("Q290", "CO: White", 170011),
            ]
        ],
    ],
)
def test_label_variant(catalog, tmp_path: Path, question: str, label: str, code: int | None) -> None:
    country = {"USA": "USA", "BGD": "BGD", "CO:": "COL"}.get(label[:3], "JPN")
    column = f"{question}: {catalog[question].label}"
    path = tmp_path / "one.csv"
    answers = {f"Q1: {catalog['Q1'].label}": ["Very important"], column: [label]}  # Q1 is a required column
    pd.DataFrame({HEAD["country"]: [country], HEAD["id"]: [1], **answers}).to_csv(path, index=False)
    table, report = read_files([path], catalog)
    assert table[question].tolist() == [pd.NA if code is None else code]
    assert report.cells == len(answers) and report.missing == (code is None) and report.unmapped == []


def test_free_numbers_read_as_floats(catalog) -> None:
    mapper = LabelMapper("Q262", _choices(catalog)["Q262"])
    assert mapper(45.0) == (True, 45) and mapper("45") == (True, 45) and mapper(-2.0) == (True, None)


@pytest.mark.parametrize(
    ("question", "label"), [("Q1", "7"), ("Q1", "3"), ("Q106", "11"), ("Q48", "0"), ("Q33", "Agree a bit")]
)
def test_not_an_option(catalog, question: str, label: str) -> None:
    """Digits are codes only on scales whose points are labelled with digits, and only for existing points."""
    mapper = LabelMapper(question, _choices(catalog)[question])
    assert mapper(label) == (False, None)


def test_missing_labels_are_na_for_every_question(catalog) -> None:
    """No missing-answer label ever maps to an option, whatever the question."""
    labels = set(MISSING_LABELS) | {
        "Don´t know",
        "Don't know",
        "DON'T KNOW ",
        "Not asked in survey",
        "Missing; Not available",
        "Not applicable; No spouse/partner",
        "INAP; Filter of not currently active",
        "Other missing; Multiple answers Mail (EVS)",
        "Don't -9:-2",
        "-1",
        "-2",
        "-4",
        "-5",
    }
    choices = _choices(catalog)
    wrong = []
    for q in catalog:
        mapper = LabelMapper(q.code, choices[q.code])
        wrong += [(q.code, lab, mapper(lab)) for lab in labels if mapper(lab) != (True, None)]
    assert wrong == []


# ---------------------------------------------------------------------------------------------------------------
# Unknown labels


def test_unknown_label_names_file_column_and_value(catalog, tmp_path: Path) -> None:
    path = write_labelled_csv(
        tmp_path / "unknown.csv", [row("USA", 1, Q1="Very important"), row("USA", 2, Q1="Extremely important")]
    )
    with pytest.raises(WVSFormatError) as err:
        read_files([path], catalog)
    message = str(err.value)
    assert str(path) in message and HEAD["Q1"] in message and "Extremely important" in message
    assert "\n" not in message


def test_collect_unknown_lists_all_unknown_labels(catalog, tmp_path: Path) -> None:
    path = write_labelled_csv(
        tmp_path / "unknown.csv",
        [
            row("USA", 1, Q1="Extremely important", Q33="Agree"),
            row("USA", 2, Q1="Extremely important", Q33="Sort of agree"),
            row("USA", 3, Q1="Very important", Q33="Agree", Q288="Eleventh step"),
        ],
    )
    table, report = read_files([path], catalog, collect_unknown=True)
    found = sorted((u.column.split(":")[0], u.value, u.count, u.file) for u in report.unmapped)
    assert found == [
        ("Q1", "Extremely important", 2, str(path)),
        ("Q288", "Eleventh step", 1, str(path)),
        ("Q33", "Sort of agree", 1, str(path)),
    ]
    assert table["Q1"].tolist() == [pd.NA, pd.NA, 1]  # unknown -> NA, never a guessed option
    assert report.mapped_share == pytest.approx(3 / 7)


# ---------------------------------------------------------------------------------------------------------------
# Files that are not WVS-7 respondent files


def assert_one_line_error(path: Path, catalog, match: str = "") -> str:
    with pytest.raises(WVSFormatError) as err:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_files([path], catalog)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message.strip(), message
    assert match in message, message
    return message


def test_missing_required_columns(catalog, tmp_path: Path) -> None:
    path = tmp_path / "nointerview.csv"
    pd.DataFrame({HEAD["country"]: ["USA"], HEAD["Q1"]: ["Very important"]}).to_csv(path, index=False)
    assert_one_line_error(path, catalog, "D_INTERVIEW")


def test_non_wvs_csv(catalog, tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("date,price\n2024-01-01,3.5\n2024-01-02,3.7\n")
    message = assert_one_line_error(path, catalog, "not a WVS-7 respondent file")
    assert "B_COUNTRY_ALPHA" in message and "date, price" in message


@pytest.mark.parametrize("content", ["", "hello\nworld\n", "\x00\x01\xff\xfe garbage"])
def test_empty_or_one_column_or_binary_csv(catalog, tmp_path: Path, content: str) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(content.encode("latin-1"))
    assert_one_line_error(path, catalog)


def test_truncated_xlsx(wvs_small: Path, catalog, tmp_path: Path) -> None:
    path = tmp_path / "USA.xlsx"
    path.write_bytes((wvs_small / "countries" / "USA.xlsx").read_bytes()[:20000])
    assert_one_line_error(path, catalog, "cannot be read as xlsx")


def test_text_named_xlsx(catalog, tmp_path: Path) -> None:
    path = tmp_path / "notes.xlsx"
    path.write_text("this is not a spreadsheet\n")
    assert_one_line_error(path, catalog, "cannot be read as xlsx")


def test_xlsx_without_wvs_sheet(catalog, tmp_path: Path) -> None:
    path = tmp_path / "other.xlsx"
    pd.DataFrame({"name": ["a", "b"], "value": [1, 2]}).to_excel(path, index=False, sheet_name="Prices")
    assert_one_line_error(path, catalog, "'Prices'")


def test_unsupported_suffix_and_missing_file(catalog, tmp_path: Path) -> None:
    path = tmp_path / "data.RData"  # R's other format: the release's .rds is read instead
    path.write_bytes(b"RDX2\nX\n")
    assert_one_line_error(path, catalog, "unsupported file type")
    damaged = tmp_path / "data.rds"
    damaged.write_bytes(b"X\n")
    assert_one_line_error(damaged, catalog, "cannot be read as rds")
    assert_one_line_error(tmp_path / "absent.rds", catalog, "not found")
    broken = tmp_path / "data.sav"  # read since .sav files are; a damaged one is one line naming it
    broken.write_bytes(b"$FL2")
    assert_one_line_error(broken, catalog, "cannot be read as sav")
    assert_one_line_error(tmp_path / "absent.csv", catalog, "not found")


def test_folder_without_respondent_files(catalog, tmp_path: Path) -> None:
    with pytest.raises(WVSFormatError, match="no respondent files"):
        read_wvs_dir(tmp_path, catalog)


def test_duplicate_respondents_across_files(catalog, tmp_path: Path) -> None:
    a = write_labelled_csv(tmp_path / "a.csv", [row("USA", 1, Q1="Very important")])
    b = write_labelled_csv(tmp_path / "b.csv", [row("USA", 1, Q1="Rather important")])
    with pytest.raises(WVSFormatError, match="duplicate respondent ids"):
        read_files([a, b], catalog)


def test_parse_cache_is_reused(wvs_small: Path, catalog, tmp_path: Path) -> None:
    path = wvs_small / "countries" / "JPN.xlsx"
    first = _read_raw(path, tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("JPN-*.pkl"))
    assert len(cached) == 1
    pd.testing.assert_frame_equal(_read_raw(path, tmp_path / "cache"), first)
