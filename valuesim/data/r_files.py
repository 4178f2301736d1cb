"""R `.rds` respondent files (the WVS-7 R release), read with pyreadr.

The release stores numeric codes (haven's labelled vectors): pyreadr gives the numbers, without haven's labels, so
they go through ingest's numeric path as the CSV's codes do, and there are no value labels to check against the
codebook. A column saved as an R factor arrives as a pandas Categorical of its labels: ingest maps those as it maps
an xlsx export's labels. pyreadr reads an R file whole (R stores it column by column); only the columns the benchmark
uses are kept, and they are handed on in chunks of raw.CSV_CHUNK rows like a CSV's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from valuesim.data.catalog import Catalog
from valuesim.data.raw import CSV_CHUNK, ID_COLUMNS, WVSFormatError, _check_columns, ids_as_text

SUFFIXES = (".rds",)


def read_frame(path: Path) -> pd.DataFrame:
    """The one data frame an .rds holds; a file that is no R file, or holds no data frame or several objects, is a
    WVSFormatError naming it."""
    import pyreadr

    if not path.exists():
        raise WVSFormatError(f"{path}: not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no readable objects": reported below, in one line
            objects = pyreadr.read_r(str(path))
    except (pyreadr.PyreadrError, pyreadr.LibrdataError, ValueError, OSError) as e:
        raise WVSFormatError(f"{path}: cannot be read as rds ({type(e).__name__}: {e})") from None
    if len(objects) != 1:
        what = f"{len(objects)} objects ({', '.join(map(str, objects))})" if objects else "no data frame"
        raise WVSFormatError(f"{path}: an .rds of WVS-7 respondents holds one data frame; this one holds {what}")
    return next(iter(objects.values()))


def read_chunks(path: Path, catalog: Catalog) -> Iterator[pd.DataFrame]:
    """The file's rows in chunks of CSV_CHUNK, only the columns the benchmark reads: numeric codes (or a factor's
    labels), ids as text."""
    frame = read_frame(path)
    _check_columns({str(c): c for c in frame.columns}, path)
    keep = [c for c in frame.columns if c in catalog or c in ID_COLUMNS.values()]
    frame = ids_as_text(frame[keep].reset_index(drop=True))  # the index holds R's row names
    for start in range(0, len(frame), CSV_CHUNK):
        yield frame.iloc[start : start + CSV_CHUNK]
