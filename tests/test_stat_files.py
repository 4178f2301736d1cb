"""SPSS .sav and Stata .dta respondent files: the same synthetic respondents from xlsx, CSV, .sav and .dta (and a
folder mixing formats) give the same table and the same benchmark; value labels are checked against the codebook;
missing-value definitions are honoured."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.data.catalog import Catalog
from valuesim.data.ingest import fingerprint, read_wvs_dir
from valuesim.data.raw import WVSFormatError
from valuesim.testing.synthetic import write_synthetic_wvs

LAYOUTS = {
    "xlsx": {"xlsx": True},
    "csv": {"xlsx": False, "csv": True},
    "sav": {"xlsx": False, "csv": True, "cross_national": "sav"},
    "dta": {"xlsx": False, "csv": True, "cross_national": "dta"},
    "xlsx+sav": {"xlsx": True, "csv": True, "cross_national": "sav"},
    "xlsx+dta": {"xlsx": True, "csv": True, "cross_national": "dta"},
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: write_synthetic_wvs(root / name, per_country=25, **kw) for name, kw in LAYOUTS.items()}


def read(folder: Path, **kw) -> tuple[pd.DataFrame, object]:
    table, report = read_wvs_dir(folder, Catalog.from_wvs(folder), **kw)
    return table.sort_values("person_id").reset_index(drop=True), report


def test_every_format_reads_the_same_respondents(folders: dict[str, Path]) -> None:
    assert sorted(p.suffix for p in folders["sav"].glob("*.sav")) == [".sav"]
    assert sorted(p.suffix for p in folders["xlsx+dta"].rglob("*") if p.suffix in (".xlsx", ".dta")) == [
        ".dta", ".xlsx", ".xlsx"
    ]  # fmt: skip
    reference, _ = read(folders["xlsx"])
    for name, folder in folders.items():
        table, report = read(folder)
        assert report.mapped_share == 1.0 and report.label_conflicts == [], name
        pd.testing.assert_frame_equal(table, reference, obj=name)
        assert fingerprint(table) == fingerprint(reference), name


def test_data_build_from_sav_and_dta_folders_gives_the_same_benchmark(folders: dict[str, Path], tmp_path: Path) -> None:
    """The cross-national file as CSV, .sav and .dta: the same benchmark, byte for byte. (The per-country xlsx
    folder holds the same respondents in another row order, countries by file name: equal tables, see above, but
    another fingerprint.)"""
    manifests = {}
    for name in ("csv", "sav", "dta"):
        result = CliRunner().invoke(app, ["data", "build", "--wvs", str(folders[name]), "--out",
                                          str(tmp_path / name), "--json"])  # fmt: skip
        assert result.exit_code == 0, result.output
        manifests[name] = json.loads(result.stdout)
    assert len({m["fingerprint"] for m in manifests.values()}) == 1
    for name in ("sav", "dta"):
        left = sorted(p.relative_to(tmp_path / name) for p in (tmp_path / name / "values").rglob("*.arrow"))
        right = sorted(p.relative_to(tmp_path / "csv") for p in (tmp_path / "csv" / "values").rglob("*.arrow"))
        assert left and left == right
        for rel in left:  # the benchmark rows, byte for byte
            assert (tmp_path / name / rel).read_bytes() == (tmp_path / "csv" / rel).read_bytes(), rel


def rewrite_sav(src: Path, dst: Path, edit) -> Path:
    frame, meta = pyreadstat.read_sav(str(src), user_missing=True)
    labels, missing = dict(meta.variable_value_labels), dict(meta.missing_ranges)
    edit(frame, labels, missing)
    pyreadstat.write_sav(frame, str(dst), variable_value_labels=labels, missing_ranges=missing)
    return dst


def copy_metadata(src: Path, dst: Path) -> None:
    dst.mkdir()
    for name in ("codebook.json", "questions.json", "question_metadata.json"):
        (dst / name).write_bytes((src / name).read_bytes())
    (dst / "protocol").mkdir()
    for fold in (src / "protocol").iterdir():
        (dst / "protocol" / fold.name).write_bytes(fold.read_bytes())


def test_a_value_label_disagreeing_with_the_codebook_is_reported(folders: dict[str, Path], tmp_path: Path) -> None:
    src = next(folders["sav"].glob("*.sav"))
    copy_metadata(folders["sav"], tmp_path / "wvs")
    codebook = json.loads((folders["sav"] / "codebook.json").read_text())
    other = codebook["Q1"]["choices"]["2"]

    def relabel(frame, labels, missing):
        labels["Q1"] = {**labels["Q1"], 1.0: other}  # code 1 labelled as option 2

    rewrite_sav(src, tmp_path / "wvs" / src.name, relabel)
    with pytest.raises(WVSFormatError, match=rf"Q1: code 1 is labelled '{other}' in the file"):
        read(tmp_path / "wvs")
    _, report = read(tmp_path / "wvs", collect_unknown=True)
    assert len(report.label_conflicts) == 1 and "Q1: code 1" in report.label_conflicts[0]


def test_missing_value_definitions_are_honoured(folders: dict[str, Path], tmp_path: Path) -> None:
    """A code the file declares missing (here Q1's 1, beside the negative codes) is a missing answer."""
    src = next(folders["sav"].glob("*.sav"))
    copy_metadata(folders["sav"], tmp_path / "wvs")

    def declare(frame, labels, missing):
        missing["Q1"] = [*missing.get("Q1", []), 1.0]

    rewrite_sav(src, tmp_path / "wvs" / src.name, declare)
    before, _ = read(folders["sav"])
    after, _ = read(tmp_path / "wvs")
    was_one = before["Q1"] == 1
    assert was_one.any() and after.loc[was_one, "Q1"].isna().all()
    assert (after.loc[~was_one, "Q1"].fillna(-9) == before.loc[~was_one, "Q1"].fillna(-9)).all()
