"""SPSS .sav, Stata .dta and R .rds respondent files: the same synthetic respondents from xlsx, CSV, .sav, .dta and
.rds (and a folder mixing formats) give the same table and the same benchmark, byte for byte; value labels are
checked against the codebook; missing-value definitions are honoured; a bad .rds is a one-line error."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import pandas as pd
import pyreadr
import pyreadstat
import pytest
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.data.catalog import Catalog
from valuesim.data.ingest import fingerprint, read_wvs_dir
from valuesim.data.raw import WVSFormatError
from valuesim.testing.synthetic import CSV_NAME, write_synthetic_wvs

LAYOUTS = {
    "xlsx": {"xlsx": True},
    "csv": {"xlsx": False, "csv": True},
    "sav": {"xlsx": False, "csv": True, "cross_national": "sav"},
    "dta": {"xlsx": False, "csv": True, "cross_national": "dta"},
    "xlsx+sav": {"xlsx": True, "csv": True, "cross_national": "sav"},
    "xlsx+dta": {"xlsx": True, "csv": True, "cross_national": "dta"},
    "rds": {"xlsx": False, "csv": True, "cross_national": "rds"},
    "xlsx+rds": {"xlsx": True, "csv": True, "cross_national": "rds"},
}
RDS_NAME = CSV_NAME.replace("csv", "rds")


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


def test_data_build_from_every_format_gives_the_same_benchmark(folders: dict[str, Path], tmp_path: Path) -> None:
    """The same respondents as the per-country xlsx exports and as the cross-national CSV, .sav, .dta and .rds: the
    same benchmark, byte for byte. The cross-national file holds the countries in another order than the exports
    (USA first; the exports are read by file name): a build puts countries in code order whatever the format."""
    in_file = pd.read_csv(folders["csv"] / CSV_NAME, usecols=["B_COUNTRY_ALPHA"])["B_COUNTRY_ALPHA"]
    assert not in_file.is_monotonic_increasing  # else this test could not tell an order that depends on the format
    manifests = {}
    for name in ("xlsx", "csv", "sav", "dta", "rds", "xlsx+rds"):
        result = CliRunner().invoke(app, ["data", "build", "--wvs", str(folders[name]), "--out",
                                          str(tmp_path / name), "--json"])  # fmt: skip
        assert result.exit_code == 0, result.output
        manifests[name] = json.loads(result.stdout)
    assert len({m["inputs"] for m in manifests.values()}) == 1
    assert len({m["fingerprint"] for m in manifests.values()}) == 1
    reference = tmp_path / "xlsx"
    arrows = sorted(p.relative_to(reference) for p in reference.rglob("*.arrow"))
    assert {p.parts[0] for p in arrows} == {"respondents", "values", "reference"}
    for name in manifests:
        assert sorted(p.relative_to(tmp_path / name) for p in (tmp_path / name).rglob("*.arrow")) == arrows, name
        for rel in arrows:  # the respondents and the benchmark rows, byte for byte
            assert (tmp_path / name / rel).read_bytes() == (reference / rel).read_bytes(), (name, rel)


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


def rds_folder(folders: dict[str, Path], tmp_path: Path) -> Path:
    copy_metadata(folders["rds"], tmp_path / "wvs")
    return tmp_path / "wvs"


def test_an_rds_factor_is_read_by_its_labels(folders: dict[str, Path], tmp_path: Path) -> None:
    """The synthetic .rds holds Q1 as an R factor: its labels are mapped like an xlsx export's, so a label the
    codebook does not know is an unknown answer naming the file and column."""
    frame = pyreadr.read_r(str(folders["rds"] / RDS_NAME))[None]
    assert isinstance(frame["Q1"].dtype, pd.CategoricalDtype) and pd.api.types.is_float_dtype(frame["Q2"])
    frame["Q1"] = frame["Q1"].cat.rename_categories({"Very important": "Extremely important"})
    wvs = rds_folder(folders, tmp_path)
    pyreadr.write_rds(str(wvs / RDS_NAME), frame.reset_index(drop=True))
    with pytest.raises(WVSFormatError, match=rf"{RDS_NAME}: column 'Q1': unknown answer 'Extremely important'"):
        read(wvs)


def r_list() -> bytes:
    """An uncompressed .rds holding an empty R list (XDR: version 2, written by R 4.3.2, VECSXP of length 0)."""
    return b"X\n" + struct.pack(">iiiii", 2, 0x040302, 0x020300, 19, 0)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("not R", "cannot be read as rds"),
        ("a list", "holds one data frame; this one holds no data frame"),
        ("two objects", "holds one data frame; this one holds 2 objects"),
    ],
)
def test_a_bad_rds_is_a_one_line_error_naming_the_file(
    folders: dict[str, Path], tmp_path: Path, kind: str, message: str
) -> None:
    path = rds_folder(folders, tmp_path) / RDS_NAME
    if kind == "not R":
        path.write_text("B_COUNTRY_ALPHA,D_INTERVIEW,Q1\nUSA,1,1\n")
    elif kind == "a list":
        path.write_bytes(r_list())
    else:
        frame = pyreadr.read_r(str(folders["rds"] / RDS_NAME))[None]
        pyreadr.write_rdata(str(path), {"a": frame.head(5), "b": frame.tail(5)})
    result = CliRunner().invoke(app, ["data", "build", "--wvs", str(path.parent), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert message in result.output and str(path) in result.output.replace("\n", "")
    with pytest.raises(WVSFormatError) as error:
        read(path.parent)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value) and "\n" not in str(error.value)
