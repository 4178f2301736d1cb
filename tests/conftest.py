"""Shared fixtures: clean DSPy settings and VALUESIM_HOME per test, and a small WVS-7 folder built at test time.

The WVS terms forbid committing data files, so the small folder (first respondents of each country file) is
written to a pytest tmp dir from the real files in ../shared/data/wvs7 (override with VALUESIM_TEST_WVS); tests
that need it are skipped when the real files are missing.
"""

from __future__ import annotations

import copy
import os
import shutil
import warnings
from pathlib import Path

import dspy
import pandas as pd
import pytest
from dspy.dsp.utils.settings import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[1]
WVS_DIR = Path(os.environ.get("VALUESIM_TEST_WVS", ROOT.parent / "shared" / "data" / "wvs7"))
COUNTRIES = ("USA", "JPN", "COL", "BGD")
N_RESPONDENTS = 40  # per country; 0.4 s per file to read and write


@pytest.fixture(autouse=True)
def clear_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Like DSPy's own test suite: every test starts from DSPy's default settings and its own VALUESIM_HOME."""
    monkeypatch.setenv("VALUESIM_HOME", str(tmp_path / "home"))
    # mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI, which valuesim.tracking prefers over VALUESIM_HOME:
    # unset it for the test (a user's own tracking server included) and restore the caller's value afterwards
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "unset")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    dspy.settings.configure(**copy.deepcopy(DEFAULT_CONFIG))
    yield
    dspy.settings.configure(**copy.deepcopy(DEFAULT_CONFIG))


def require_wvs() -> Path:
    if not (WVS_DIR / "codebook.json").exists() or not (WVS_DIR / "countries").is_dir():
        pytest.skip(f"real WVS-7 files not found at {WVS_DIR}")
    return WVS_DIR


@pytest.fixture(scope="session")
def wvs_dir() -> Path:
    """The real WVS-7 folder (read only)."""
    return require_wvs()


@pytest.fixture(scope="session")
def catalog(wvs_dir: Path):
    from valuesim.data.catalog import Catalog

    return Catalog.from_wvs(wvs_dir)


@pytest.fixture(scope="session")
def wvs_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A WVS-7 folder with the first N_RESPONDENTS respondents of each country, `CODE: label` headers kept."""
    src = require_wvs()
    dst = tmp_path_factory.mktemp("wvs_small")
    for name in ("codebook.json", "questions.json", "question_metadata.json"):
        shutil.copy(src / name, dst / name)
    shutil.copytree(src / "protocol", dst / "protocol")
    (dst / "countries").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openpyxl: "Workbook contains no default style"
        for country in COUNTRIES:
            df = pd.read_excel(src / "countries" / f"{country}.xlsx", nrows=N_RESPONDENTS, dtype=object)
            df.to_excel(dst / "countries" / f"{country}.xlsx", index=False)
    return dst


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parent folder for benchmarks built from wvs_small: build() keeps its parse cache in <parent>/cache, so the
    xlsx files are parsed once per session."""
    return tmp_path_factory.mktemp("builds")


@pytest.fixture(scope="session")
def bench_small(wvs_small: Path, builds: Path) -> Path:
    """`build()` of wvs_small (seed 0); returns the benchmark folder."""
    from valuesim.data.benchmark import build

    out = builds / "bench_small"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build(wvs_small, out, seed=0)
    return out
