"""`data build` is atomic and validated: a failed build leaves the old benchmark whole, another benchmark is not
replaced silently, bad fold files, shifted headers, fractional codes and empty files are errors naming the file.
It streams (a CSV read in chunks, rows written a chunk of persons at a time) and writes the rows the per-person
definition (`person_fold`) gives."""

from __future__ import annotations

import io
import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_from_disk
from rich.console import Console

from valuesim import config
from valuesim.data import raw, rows
from valuesim.data.benchmark import PROTOCOLS, SPLITS, Benchmark, person_fold
from valuesim.data.build import build, read_folds
from valuesim.data.catalog import Catalog
from valuesim.data.ingest import read_wvs_dir
from valuesim.data.raw import WVSFormatError
from valuesim.errors import ValueSimError
from valuesim.progress import bars
from valuesim.testing.synthetic import CSV_NAME, write_synthetic_wvs


@pytest.fixture
def wvs(wvs_small: Path, tmp_path: Path) -> Path:
    """A private copy of the small WVS folder (tests damage it)."""
    return Path(shutil.copytree(wvs_small, tmp_path / "wvs"))


def one_country(wvs: Path) -> Path:
    """Keep one country file (faster builds) and return it."""
    files = sorted((wvs / "countries").glob("*.xlsx"))
    for f in files[1:]:
        f.unlink()
    return files[0]


def test_a_failed_build_leaves_the_previous_benchmark_whole(wvs: Path, tmp_path: Path, monkeypatch) -> None:
    one_country(wvs)
    out = tmp_path / "bench"
    first = build(wvs, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    calls = {"n": 0}
    real = rows.chunk_tables

    def dies_halfway(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 4:  # the second protocol's second split
            raise RuntimeError("killed mid-build")
        yield from real(*args, **kwargs)

    monkeypatch.setattr(rows, "chunk_tables", dies_halfway)
    with pytest.raises(RuntimeError, match="killed mid-build"):
        build(wvs, out, force=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # not one file changed
    assert Benchmark(out).fingerprint == first["fingerprint"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bench-")]  # no temporary folder left


def test_another_benchmark_is_not_replaced_silently(wvs: Path, tmp_path: Path) -> None:
    one_country(wvs)
    out = tmp_path / "bench"
    a = build(wvs, out, seed=0)
    assert build(wvs, out, seed=0)["fingerprint"] == a["fingerprint"]  # the same inputs: a rebuild is fine
    with pytest.raises(ValueSimError, match="holds another benchmark .* --force"):
        build(wvs, out, seed=1)  # the seed shapes the benchmark
    assert Benchmark(out).fingerprint == a["fingerprint"]
    b = build(wvs, out, seed=1, force=True)
    assert Benchmark(out).fingerprint == b["fingerprint"] != a["fingerprint"]


def test_fingerprint_covers_the_fold_files(wvs: Path, tmp_path: Path) -> None:
    one_country(wvs)
    a = build(wvs, tmp_path / "a")
    fold = json.loads((wvs / "protocol" / "fold_1.json").read_text())
    fold["train_set"] = fold["train_set"][1:]
    (wvs / "protocol" / "fold_1.json").write_text(json.dumps(fold))
    assert build(wvs, tmp_path / "b")["fingerprint"] != a["fingerprint"]


def test_parse_cache_stays_in_the_project_cache(wvs: Path, tmp_path: Path) -> None:
    one_country(wvs)
    build(wvs, tmp_path / "x" / "bench")
    assert not (tmp_path / "x" / "cache").exists()
    assert list((config.cache_dir() / "wvs").glob("*.pkl"))


def move(fold: dict, question: str) -> None:
    """Hold `question` out in `fold` too (and take it off that fold's profile, so only the overlap is wrong)."""
    fold["train_set"] = [q for q in fold["train_set"] if q != question]
    fold["test_set"] = [*fold["test_set"], question]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: f[1].update(test_set=f[1]["test_set"] + f[1]["train_set"][:1]), "both profile and held out"),
        (lambda f: f[2].update(fold=1), "fold 1 appears in two files"),
        (lambda f: f[1].update(train_set=f[1]["train_set"] + ["Q999"]), "unknown question codes \\['Q999'\\]"),
        (lambda f: move(f[2], f[1]["test_set"][0]), "held out in fold 1 too"),
        (lambda f: f[3].pop("test_set"), "missing field 'test_set'"),
    ],
)
def test_fold_files_are_validated_before_anything_is_written(wvs: Path, tmp_path: Path, damage, message) -> None:
    folds = {n: json.loads((wvs / "protocol" / f"fold_{n}.json").read_text()) for n in range(1, 6)}
    damage(folds)
    for n, f in folds.items():
        (wvs / "protocol" / f"fold_{n}.json").write_text(json.dumps(f))
    with pytest.raises(ValueSimError, match=message):
        build(wvs, tmp_path / "bench")
    assert not (tmp_path / "bench").exists()


def test_no_fold_files(wvs: Path) -> None:
    shutil.rmtree(wvs / "protocol")
    (wvs / "protocol").mkdir()
    with pytest.raises(FileNotFoundError, match="no fold_"):
        read_folds(wvs / "protocol", Catalog.from_wvs(wvs))


def test_a_shifted_header_is_refused_and_named(wvs: Path, tmp_path: Path) -> None:
    """Headers shifted by one column put each column's answers under its neighbour's name: most labels then match
    no option. With --report-unknown the build still refuses to write, naming the columns and whose options
    their values are."""
    path = one_country(wvs)
    df = pd.read_excel(path, dtype=object, engine="calamine")
    cols = list(df.columns)
    start, stop = (
        cols.index(next(c for c in cols if c.startswith("Q1:"))),
        cols.index(next(c for c in cols if c.startswith("Q80:"))),
    )
    shifted = cols[:start] + cols[start + 1 : stop + 1] + [cols[start]] + cols[stop + 1 :]
    df.columns = shifted
    df.to_excel(path, index=False)
    with pytest.raises(ValueSimError, match=r"only .*% of the answered cells map .*its values are Q\d+'s options"):
        build(wvs, tmp_path / "bench", report_unknown=True)
    assert not (tmp_path / "bench").exists()


def test_fractional_codes_are_errors(wvs: Path, tmp_path: Path) -> None:
    """The numeric cross-national layout: a cell "2.7" is no answer code (it used to be stored as 2)."""
    path = one_country(wvs)
    df = pd.read_excel(path, dtype=object, engine="calamine")
    catalog = Catalog.from_wvs(wvs)
    columns = {"B_COUNTRY_ALPHA": df.filter(like="B_COUNTRY_ALPHA").iloc[:, 0], "D_INTERVIEW": range(1, len(df) + 1)}
    for q in catalog:
        if not q.open and q.code not in ("Q223", "Q290"):
            columns[q.code] = str(list(q.options)[0])
    numeric = pd.DataFrame(columns, dtype=object)
    numeric.loc[0, "Q1"] = "2.7"
    path.unlink()
    numeric.to_csv(wvs / "WVS_Cross-National_Wave_7_csv_v6_0.csv", index=False)
    with pytest.raises(WVSFormatError, match="column 'Q1': unknown answer '2.7'"):
        build(wvs, tmp_path / "bench")


def test_a_country_file_without_rows_is_an_error(wvs: Path, tmp_path: Path) -> None:
    path = one_country(wvs)
    pd.read_excel(path, dtype=object, engine="calamine").head(0).to_excel(path, index=False)
    with pytest.raises(WVSFormatError, match=f"{path.name}: no respondent rows"):
        build(wvs, tmp_path / "bench")
    assert not (tmp_path / "bench").exists()


def test_build_cli_force_and_refusal(wvs: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from valuesim.cli import app

    one_country(wvs)
    out = tmp_path / "bench"
    runner = CliRunner()
    assert runner.invoke(app, ["data", "build", "--wvs", str(wvs), "--out", str(out)]).exit_code == 0
    r = runner.invoke(app, ["data", "build", "--wvs", str(wvs), "--out", str(out), "--seed", "3"])
    assert r.exit_code == 1 and "holds another benchmark" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["data", "build", "--wvs", str(wvs), "--out", str(out), "--seed", "3", "--force"])
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------------------------------------------------------
# Streaming: the same benchmark as the per-person definition


def expected_rows(bench: Path, protocol: str, split: str) -> list[dict]:
    """The rows `person_fold` gives (one dict per person and fold, persons in table order)."""
    b = Benchmark(bench)
    folds = read_folds(Path(b.manifest["wvs_dir"]) / "protocol", b.catalog)
    people = b.respondents(split).to_dict("records")
    return [
        person_fold(p, b.catalog, protocol, fold, train_q, test_q, b.manifest["seed"])
        for p in people
        for fold, (train_q, test_q) in folds.items()
    ]


def test_rows_are_person_folds(bench_small: Path) -> None:
    """Every row of both protocols, in order, with Dataset.from_list's column types (the old build's)."""
    for protocol in PROTOCOLS:
        saved = load_from_disk(str(bench_small / protocol))
        for split in SPLITS:
            want = expected_rows(bench_small, protocol, split)
            assert saved[split].features == rows.features(protocol)
            assert saved[split].to_list() == want, (protocol, split)
            assert len(want) == 5 * len(Benchmark(bench_small).respondents(split)) > 0


def test_chunks_do_not_change_the_benchmark(tmp_path: Path, monkeypatch) -> None:
    """A numeric CSV read 7 rows at a time and rows built 5 persons at a time give the same files as one chunk
    each; seed 3 so the shuffles differ from seed 0's."""
    wvs = write_synthetic_wvs(tmp_path / "wvs", countries=3, per_country=12, seed=5, xlsx=False, csv=True)
    whole = build(wvs, tmp_path / "whole", seed=3)
    monkeypatch.setattr(raw, "CSV_CHUNK", 7)
    monkeypatch.setattr(rows, "CHUNK", 5)
    chunked = build(wvs, tmp_path / "chunked", seed=3)
    assert chunked["inputs"] == whole["inputs"] and chunked["ingest"] == whole["ingest"]
    for name in ("respondents", *PROTOCOLS):
        a, b = load_from_disk(str(tmp_path / "whole" / name)), load_from_disk(str(tmp_path / "chunked" / name))
        for split in [None] if name == "respondents" else SPLITS:
            ta, tb = (a if split is None else a[split]).data.table, (b if split is None else b[split]).data.table
            assert ta.equals(tb), (name, split)
    for split in SPLITS:
        assert load_from_disk(str(tmp_path / "chunked" / "values"))[split].to_list() == expected_rows(
            tmp_path / "chunked", "values", split
        )


def test_csv_reads_only_the_benchmark_columns_and_reports_across_chunks(tmp_path: Path, monkeypatch) -> None:
    """Columns the benchmark does not read are skipped; an unknown code is counted over every chunk once."""
    wvs = write_synthetic_wvs(tmp_path / "wvs", countries=2, per_country=10, seed=1, xlsx=False, csv=True)
    frame = pd.read_csv(wvs / CSV_NAME)
    frame = pd.concat([frame, pd.Series(1.25, frame.index, name="W_WEIGHT")], axis=1)  # read by nothing
    frame.loc[[0, 5, 17], "Q1"] = 9  # not a Q1 option, in three chunks of 7 rows
    frame.to_csv(wvs / CSV_NAME, index=False)
    catalog = Catalog.from_wvs(wvs)
    whole, report = read_wvs_dir(wvs, catalog, collect_unknown=True)
    monkeypatch.setattr(raw, "CSV_CHUNK", 7)
    chunked, chunked_report = read_wvs_dir(wvs, catalog, collect_unknown=True)
    pd.testing.assert_frame_equal(chunked, whole)
    assert [(u.column, u.value, u.count) for u in chunked_report.unmapped] == [("Q1", "9", 3)]
    assert chunked_report == report and "W_WEIGHT" not in whole.columns


def test_progress_bars_show_count_rate_and_time_left() -> None:
    out = io.StringIO()
    with bars(True, console=Console(file=out, force_terminal=True, width=120)) as progress:
        task = progress.add_task("writing values-train", total=1000)
        for _ in range(2):  # rich measures a rate from two advances at different times
            progress.advance(task, 200)
            time.sleep(0.05)
        progress.refresh()
    shown = out.getvalue()
    assert "writing values-train" in shown and "400/1000" in shown
    assert re.search(r"\d+/s", shown) and re.search(r"0:00:\d\d", shown)  # a rate and a time left
    quiet = io.StringIO()
    with bars(False, console=Console(file=quiet, force_terminal=True)) as progress:
        progress.advance(progress.add_task("nothing", total=3), 1)
    assert quiet.getvalue() == ""
