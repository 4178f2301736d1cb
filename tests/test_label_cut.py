"""Labels the codebook cut at LABEL_CUT (60) characters: a country file that carries the whole label maps to the
option whose cut label it starts with, when exactly one option's does."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest

from valuesim.data.catalog import COUNTRY_SPECIFIC, LABEL_CUT, Catalog
from valuesim.data.ingest import read_wvs_dir
from valuesim.data.labels import AmbiguousLabelError, LabelMapper, _question_choices
from valuesim.data.raw import WVSFormatError
from valuesim.testing.synthetic import respondents, write_synthetic_wvs

PREFIX = r"^[A-Z]{2,4}:\s*"
MORE = " and the rest of its long name (Federation)"


@pytest.fixture(scope="module")
def long_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_synthetic_wvs(tmp_path_factory.mktemp("cut"), countries=["USA", "JPN", "COL"], per_country=60)


def test_synthetic_codebook_cuts_long_labels(long_labels: Path) -> None:
    codebook = json.loads((long_labels / "codebook.json").read_text())
    for code in sorted(COUNTRY_SPECIFIC):
        at_cut = [lab for lab in codebook[code]["choices"].values() if len(lab) == LABEL_CUT]
        assert len(at_cut) == 3, (code, at_cut)  # one per country
    catalog = Catalog.from_wvs(long_labels)
    assert all(len(catalog[code].cut) == 3 for code in COUNTRY_SPECIFIC)


def test_a_build_over_labels_past_the_cut_maps_every_cell(long_labels: Path) -> None:
    catalog = Catalog.from_wvs(long_labels)
    codebook = json.loads((long_labels / "codebook.json").read_text())
    files = pd.read_excel(long_labels / "countries" / "USA.xlsx", dtype=object, engine="calamine")
    party = next(c for c in files.columns if c.startswith("Q223:"))
    values = set(files[party].dropna().astype(str))
    whole = "Liberal and Democratic Alliance for the Renewal of Civic and Social Institutions"
    assert {f"USA: {whole}", whole} <= values  # past the cut, with and without the prefix
    assert f"USA: {whole}"[:LABEL_CUT] in codebook["Q223"]["choices"].values()

    table, report = read_wvs_dir(long_labels, catalog)
    assert report.unmapped == [] and report.mapped_share == 1.0
    truth = respondents(codebook, ["USA", "JPN", "COL"], 60, seed=0)
    truth.index = truth["B_COUNTRY_ALPHA"] + "-" + truth["D_INTERVIEW"].astype(str)
    got = table.set_index("person_id")
    for code in sorted(COUNTRY_SPECIFIC):
        long_codes = catalog[code].cut
        expected = truth.loc[got.index, code]
        rows = expected.isin(long_codes)
        assert rows.sum() > 0, code
        assert (got.loc[rows, code].astype(int) == expected[rows]).all(), code


def codebook_labels_at_cut(wvs_dir: Path, catalog: Catalog) -> list[tuple[str, str | None, int, str]]:
    """(question, country or None, code, codebook label) of every Q1-Q290 label at the cut length."""
    codebook = json.loads((wvs_dir / "codebook.json").read_text())
    out = []
    for question in catalog:
        for c, label in codebook[question.code]["choices"].items():
            if int(c) < 0 or len(label) != LABEL_CUT:
                continue
            owner = next((a3 for a3, opts in question.country_options.items() if int(c) in opts), None)
            out.append((question.code, owner, int(c), label))
    return out


def test_every_codebook_label_at_the_cut_maps_when_a_file_carries_more(wvs_dir: Path, catalog: Catalog) -> None:
    """Every label of the codebook (the real one when present) at the cut length, continued past it, with and
    without its country prefix, maps to its own code with that country's options."""
    found = codebook_labels_at_cut(wvs_dir, catalog)
    assert found, "no codebook label at the cut length"
    for code, country, c, label in found:
        question = catalog[code]
        assert c in question.cut
        mapper = LabelMapper(code, _question_choices(question, country), question.cut)
        for spelling in (label + MORE, re.sub(PREFIX, "", label) + MORE, label.upper() + MORE):
            assert mapper(spelling) == (True, c), (code, country, spelling)
        assert mapper(label) == (True, c)  # the cut label itself, as the codebook spells it


def test_only_labels_at_the_cut_match_by_their_start(catalog: Catalog) -> None:
    mapper = LabelMapper("Q1", {"1": "Very important", "2": "Rather important"})
    assert mapper("Very important indeed") == (False, None)


def test_two_options_cut_to_one_start_are_an_error_naming_both() -> None:
    start = "USA: Alliance for the Renewal of the Republic and of its Peo"
    assert len(start) == LABEL_CUT
    mapper = LabelMapper("Q223", {"840001": start, "840002": start, "840003": "USA: Green Party"}, cut=[840001, 840002])
    with pytest.raises(AmbiguousLabelError, match=r"840001 .*840002 ") as e:
        mapper(start + "ple's Rights")
    assert start + "ple's Rights" in str(e.value)
    assert mapper("USA: Green Party") == (True, 840003)


def test_an_ambiguous_label_in_a_file_names_the_file_and_column(tmp_path: Path, catalog: Catalog) -> None:
    """Through ingestion: one line naming the file, the column and both options."""
    from valuesim.data.ingest import IngestReport, _map_labels

    start = "Alliance for the Renewal of the Republic and of its People's"
    mapper = LabelMapper("Q223", {"1": start, "2": start}, cut=[1, 2])
    column = pd.Series([start + " Rights", None])
    with pytest.raises(WVSFormatError, match=r"USA\.xlsx: column 'Q223: Party'.*options 1 .* and 2 "):
        _map_labels(column, mapper, tmp_path / "USA.xlsx", "Q223: Party", IngestReport(), collect_unknown=True)
