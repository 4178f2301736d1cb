"""The synthetic folder's file writers: a one-sheet xlsx written directly as XML, the way WVS country exports are
stored (shared strings, sheet "Data"; pandas' openpyxl writer takes a second per 100 respondents, this ~50 ms),
SPSS/Stata files with value labels through pyreadstat (`write_stat_file`) and R's .rds through pyreadr
(`write_r_file`)."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd


def _column(i: int) -> str:
    letters = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def write_xlsx(path: Path, frame: pd.DataFrame, sheet: str = "Data") -> None:
    """`frame` as a one-sheet xlsx with shared strings, the way the real exports are stored. Written directly as
    XML: pandas' openpyxl writer takes a second per 100 respondents, this ~50 ms."""
    strings: dict[str, int] = {}
    cols = [_column(i) for i in range(frame.shape[1])]

    def cell(ref: str, value: object) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return ""
        if isinstance(value, (int, np.integer)):
            return f'<c r="{ref}"><v>{int(value)}</v></c>'
        return f'<c r="{ref}" t="s"><v>{strings.setdefault(str(value), len(strings))}</v></c>'

    rows = [list(frame.columns), *frame.itertuples(index=False, name=None)]
    body = "".join(
        f'<row r="{r}">' + "".join(cell(f"{c}{r}", v) for c, v in zip(cols, row, strict=True)) + "</row>"
        for r, row in enumerate(rows, start=1)
    )
    main = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006"
    shared = "".join(f'<si><t xml:space="preserve">{escape(s)}</t></si>' for s in strings)
    parts = {
        "[Content_Types].xml": f'<Types xmlns="{pkg}/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/sharedStrings.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
        "_rels/.rels": f'<Relationships xmlns="{pkg}/relationships"><Relationship Id="rId1" '
        f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook {main} xmlns:r="{rel}"><sheets>'
        f'<sheet name="{escape(sheet)}" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{pkg}/relationships">'
        f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f"<worksheet {main}><sheetData>{body}</sheetData></worksheet>",
        "xl/sharedStrings.xml": f'<sst {main} count="{len(strings)}" uniqueCount="{len(strings)}">{shared}</sst>',
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, xml in parts.items():
            z.writestr(name, '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + xml)


def write_stat_file(frame: pd.DataFrame, codebook: dict, path: Path) -> None:
    """`frame` (numeric codes, negative = missing) as a .sav or .dta with the codebook's value labels and variable
    labels; in a .sav the negative codes are declared user-missing, as in the WVS release."""
    import pyreadstat

    value_labels: dict[str, dict[int | float, str]] = {
        str(c): {int(k): str(v) for k, v in codebook[c]["choices"].items()}
        for c in frame.columns
        if c in codebook and codebook[c].get("choices") and pd.api.types.is_integer_dtype(frame[c])
    }
    column_labels = {c: str(codebook[c]["question"])[:80] if c in codebook else c for c in frame.columns}
    frame = frame.copy()
    for c in frame.columns:  # Stata and SPSS store numbers as doubles; readstat wants numpy dtypes, not Int64
        if pd.api.types.is_integer_dtype(frame[c]):
            frame[c] = frame[c].astype("float64")
        elif not pd.api.types.is_numeric_dtype(frame[c]):
            frame[c] = frame[c].astype(str)
    if path.suffix.lower() == ".sav":
        # the release declares the negative codes (Don't know, No answer, Not asked, Missing) user-missing
        missing: dict[str, list[Any]] = {c: [{"lo": -5.0, "hi": -1.0}] for c in value_labels}
        pyreadstat.write_sav(
            frame, str(path), column_labels=column_labels, variable_value_labels=value_labels, missing_ranges=missing
        )
    else:
        pyreadstat.write_dta(frame, str(path), column_labels=column_labels, variable_value_labels=value_labels)


def write_r_file(frame: pd.DataFrame, codebook: dict, path: Path, factors: Sequence[str] = ()) -> None:
    """`frame` (numeric codes, negative = missing) as an .rds: numbers as R doubles, as the release's labelled
    vectors hold them, and the `factors` columns as R factors of the codebook's labels (what haven's as_factor makes
    of a labelled vector), so both kinds of column are read in the tests."""
    import pyreadr

    frame = frame.copy()
    for c in frame.columns:
        if c in factors:
            labels = {int(k): str(v) for k, v in codebook[c]["choices"].items()}
            frame[c] = pd.Categorical(
                [labels.get(int(v)) for v in frame[c]], categories=list(dict.fromkeys(labels.values()))
            )
        elif pd.api.types.is_integer_dtype(frame[c]):
            frame[c] = frame[c].astype("float64")
        elif not pd.api.types.is_numeric_dtype(frame[c]):
            frame[c] = frame[c].astype(str)
    pyreadr.write_rds(str(path), frame, compress="gzip", compresslevel=6)
