"""SPSS `.sav` and Stata `.dta` respondent files (the WVS-7 releases most users download), read and written with
pyreadstat.

They hold numeric codes, like the cross-national CSV, plus value labels. Reading streams them in chunks of
raw.CSV_CHUNK rows and only the columns the benchmark uses (the cross-national file has 97,220 rows and ~600
columns); the codes then go through ingest's numeric path, as the CSV's do. Missing-value definitions are honoured:
SPSS user-missing codes and Stata's extended missing values (.a-.z) are read as missing. The file's value labels are
checked against the codebook's options once per file (`label_conflicts`): a label that names another option for a
code is reported, never trusted silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from valuesim.data.catalog import LABEL_CUT, NUMERIC_ITEMS, Catalog
from valuesim.data.labels import AmbiguousLabelError, LabelMapper, _question_choices, normalize
from valuesim.data.raw import CSV_CHUNK, ID_COLUMNS, WVSFormatError, _check_columns, ids_as_text

SUFFIXES = (".sav", ".dta")


def _reader(path: Path) -> Any:
    import pyreadstat

    return pyreadstat.read_sav if path.suffix.lower() == ".sav" else pyreadstat.read_dta


def _errors() -> tuple[type[BaseException], ...]:
    import pyreadstat

    return (pyreadstat.ReadstatError, pyreadstat.PyreadstatError, ValueError, OSError)


def read_metadata(path: Path) -> Any:
    """The file's metadata (column names, value labels, missing ranges), without its rows."""
    try:
        _, meta = _reader(path)(str(path), metadataonly=True)
    except _errors() as e:
        if isinstance(e, FileNotFoundError):
            raise WVSFormatError(f"{path}: not found") from None
        raise WVSFormatError(f"{path}: cannot be read as {path.suffix.lstrip('.')} ({type(e).__name__}: {e})") from None
    return meta


def read_chunks(path: Path, catalog: Catalog) -> Iterator[pd.DataFrame]:
    """The file's rows in chunks of CSV_CHUNK, only the columns the benchmark reads: numeric codes (missing codes as
    NaN), ids as text."""
    import pyreadstat

    meta = read_metadata(path)
    columns = {str(c): c for c in meta.column_names}
    _check_columns(columns, path)
    keep = [c for c in meta.column_names if c in catalog or c in ID_COLUMNS.values()]
    try:
        chunks = pyreadstat.read_file_in_chunks(_reader(path), str(path), chunksize=CSV_CHUNK, usecols=keep)
        for chunk, _ in chunks:
            yield ids_as_text(chunk)
    except _errors() as e:
        raise WVSFormatError(f"{path}: cannot be read as {path.suffix.lstrip('.')} ({type(e).__name__}: {e})") from None


def label_conflicts(path: Path, catalog: Catalog) -> list[str]:
    """One line per value label of the file that names another option (or none) of the codebook for its code."""
    meta = read_metadata(path)
    out = []
    for column, labels in (meta.variable_value_labels or {}).items():
        if column not in catalog or column in NUMERIC_ITEMS or catalog[column].open:
            continue
        question = catalog[column]
        mappers: dict[str | None, LabelMapper] = {}
        for value, label in labels.items():
            code = int(value)
            if code < 0:
                continue  # missing codes: their labels vary by release and all mean missing
            # a per-country code is checked against its own country's options: "Green Party" is an option of many
            owner = next((a3 for a3, opts in question.country_options.items() if code in opts), None)
            if owner not in mappers:
                mappers[owner] = LabelMapper(column, _question_choices(question, owner), question.cut)
            try:
                known, mapped = mappers[owner](label)
            except AmbiguousLabelError:
                continue  # starts with two options' cut labels (two countries' parties): cannot tell, not wrong
            said = question.options_for(None).get(code) or _any_country_option(question.country_options, code)
            if (
                not known
                and said is not None
                and len(label) >= LABEL_CUT
                and normalize(said).startswith(normalize(label))
            ):
                continue  # SPSS keeps 120 bytes of a value label: the file cut the codebook's label
            if not known or (mapped is not None and mapped != code):
                out.append(f"{path}: {column}: code {code} is labelled {label!r} in the file, {said!r} in the codebook")
    return out


def _any_country_option(country_options: dict[str, dict[int, str]], code: int) -> str | None:
    return next((opts[code] for opts in country_options.values() if code in opts), None)
