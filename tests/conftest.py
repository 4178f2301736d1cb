"""Shared fixtures: clean DSPy settings and VALUESIM_HOME per test, and a small WVS-7 folder built at test time.

The WVS terms forbid committing data files. The small folder is cut from the real files in ../shared/data/wvs7
(override with VALUESIM_TEST_WVS) when they are there, and is a synthetic WVS-7 folder in the same layout
(valuesim.testing.synthetic) when they are not, so a clone without the data still runs the ingestion, benchmark,
program, compile and reliability tests. Tests about the real files' own content are marked `real_data` and skip
without them.
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


def has_real_wvs() -> bool:
    return (WVS_DIR / "codebook.json").exists() and (WVS_DIR / "countries").is_dir()


def require_wvs() -> Path:
    if not has_real_wvs():
        pytest.skip(f"real WVS-7 files not found at {WVS_DIR}")
    return WVS_DIR


real_data = pytest.mark.skipif(not has_real_wvs(), reason=f"about the real WVS-7 files, not found at {WVS_DIR}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`@pytest.mark.real_data` on a test or module means: skip without the real files."""
    for item in items:
        if item.get_closest_marker("real_data") and not has_real_wvs():
            item.add_marker(pytest.mark.skip(reason=f"about the real WVS-7 files, not found at {WVS_DIR}"))


@pytest.fixture(scope="session")
def synthetic_wvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic WVS-7 folder (labelled xlsx, 4 countries x N_RESPONDENTS)."""
    from valuesim.testing.synthetic import write_synthetic_wvs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_synthetic_wvs(tmp_path_factory.mktemp("wvs_synthetic"), per_country=N_RESPONDENTS)


@pytest.fixture(scope="session")
def wvs_dir(synthetic_wvs: Path) -> Path:
    """The real WVS-7 folder (read only), or the synthetic one without it."""
    return WVS_DIR if has_real_wvs() else synthetic_wvs


@pytest.fixture(scope="session")
def catalog(wvs_dir: Path):
    from valuesim.data.catalog import Catalog

    return Catalog.from_wvs(wvs_dir)


@pytest.fixture(scope="session")
def wvs_small(tmp_path_factory: pytest.TempPathFactory, synthetic_wvs: Path) -> Path:
    """A WVS-7 folder with the first N_RESPONDENTS respondents of each real country file (`CODE: label` headers
    kept), or the synthetic folder without the real files."""
    if not has_real_wvs():
        return synthetic_wvs
    src = WVS_DIR
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
    from valuesim.data.build import build

    out = builds / "bench_small"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build(wvs_small, out, seed=0)
    return out
