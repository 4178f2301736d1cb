"""A careless or unlucky user loses nothing and gets one line: `data build` never replaces what it did not build,
settings and history sizes are checked before any work, and a full, read-only or foreign filesystem is an error
naming the path, not a traceback (issue 20)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from valuesim.cli import app
from valuesim.cli.options import parse_settings
from valuesim.data.build import BUILDING_LOCK, remove_dead_builds
from valuesim.errors import ValueSimError
from valuesim.programs import PROGRAMS
from valuesim.programs.settings import check_settings, settings_model


def invoke(*args: object, cwd: Path | None = None):
    with contextlib.chdir(cwd) if cwd else contextlib.nullcontext():
        return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments: str) -> str:
    """The result failed with exit 1 and a single 'Error:' line holding every fragment, no traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert result.exit_code == 1, result.output
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


# --- data build never replaces what it did not build ---------------------------------------------------------


def user_folder(tmp_path: Path) -> Path:
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "todo.txt").write_text("my notes\n")
    (notes / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return notes


@pytest.mark.parametrize("force", [False, True])
def test_build_refuses_a_folder_that_is_not_a_benchmark(tmp_path: Path, wvs_small: Path, force: bool) -> None:
    notes = user_folder(tmp_path)
    before = tree_digest(tmp_path)
    r = invoke("data", "build", "--wvs", wvs_small, "--out", notes, *(["--force"] if force else []))
    one_line_error(r, str(notes), "holds no benchmark")
    assert tree_digest(tmp_path) == before  # nothing moved aside, nothing deleted, no building folder left


def test_build_refuses_a_file_and_the_current_folder(tmp_path: Path, wvs_small: Path) -> None:
    target = tmp_path / "results.txt"
    target.write_text("keep me\n")
    user_folder(tmp_path)
    before = tree_digest(tmp_path)
    one_line_error(invoke("data", "build", "--wvs", wvs_small, "--out", target, "--force"), str(target), "is a file")
    one_line_error(invoke("data", "build", "--wvs", wvs_small, "--out", ".", cwd=tmp_path), str(tmp_path))
    assert tree_digest(tmp_path) == before


def test_build_refuses_a_benchmark_holding_other_files(tmp_path: Path, bench_small: Path, wvs_small: Path) -> None:
    import shutil

    bench = tmp_path / "bench"
    shutil.copytree(bench_small, bench)
    (bench / "my-analysis.ipynb").write_text("{}")
    before = tree_digest(tmp_path)
    one_line_error(invoke("data", "build", "--wvs", wvs_small, "--out", bench, "--force"), "my-analysis.ipynb")
    assert tree_digest(tmp_path) == before


def test_dead_building_folders_are_removed_live_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "benchmark"
    dead = tmp_path / ".benchmark-building-dead"
    live = tmp_path / ".benchmark-building-live"
    for folder in (dead, live):
        folder.mkdir()
        (folder / BUILDING_LOCK).touch()
        (folder / "respondents.arrow").write_bytes(b"x" * 1000)
    other = tmp_path / ".notes-building-x"  # not this --out's
    other.mkdir()
    with open(live / BUILDING_LOCK) as held:  # a build that is still running holds its lock
        fcntl.flock(held, fcntl.LOCK_EX)
        removed = remove_dead_builds(out)
    assert removed == [dead] and not dead.exists()
    assert live.exists() and other.exists()


def test_rebuild_leaves_no_temporary_folders(tmp_path: Path, wvs_small: Path) -> None:
    out = tmp_path / "data" / "benchmark"
    killed = tmp_path / "data" / ".benchmark-building-killed"  # killed before it took its lock: no lock file
    killed.mkdir(parents=True)
    os.utime(killed, (0, 0))
    for _ in range(2):  # the second build replaces the first
        r = invoke("data", "build", "--wvs", wvs_small, "--out", out, "--json")
        assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["benchmark"]
    assert sorted(p.name for p in out.iterdir()) == ["catalog.json", "manifest.json", "reference", "respondents",
                                                     "values"]  # fmt: skip


# --- settings and history sizes are checked before any work ---------------------------------------------------


@pytest.mark.parametrize(
    "program, setting, fragment",
    [
        ("valuesim", "analysis_tokens=0", "greater than or equal to 16"),
        ("valuesim", "backstory_words=-5", "greater than or equal to 10"),
        ("valuesim", "backstory_words=abc", "valid integer"),
        ("rag", "k=-1", "greater than or equal to 1"),
        ("rag", "threshold=7", "less than or equal to 1"),
        ("cell", "min_cell=-1", "greater than or equal to 1"),
        ("knn", "k=0", "greater than or equal to 1"),
        ("knn", "k=true", "valid integer"),
        ("ml", "model=forest", "'hgb' or 'logreg'"),
        ("ml", "folds=1", "takes c, copies"),  # built by the program, not a setting
        ("valuesim", "typo=1", "takes analysis_tokens, backstory_words"),
    ],
)
def test_bad_settings_are_refused_before_any_work(program: str, setting: str, fragment: str, bench_small: Path) -> None:
    r = invoke("evaluate", "--program", program, "--set", setting, "--data", bench_small, "--lm", "dummy")
    one_line_error(r, f"--set {setting.split('=')[0]}", fragment)
    assert not (Path(os.environ["VALUESIM_HOME"]) / "runs").exists()  # no run folder, no MLflow run


@pytest.mark.parametrize(
    "command",
    [
        ["compile", "--program", "valuesim"],
        ["bench", "--programs", "valuesim", "--out", "{tmp}/bench"],
        ["estimate", "--programs", "valuesim"],
        ["evaluate", "--program", "valuesim"],
    ],
)
def test_every_command_with_settings_refuses_an_unknown_key(
    command: list[str], bench_small: Path, tmp_path: Path
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    r = invoke(*args, "--set", "typo=1", "--data", bench_small, "--lm", "dummy")
    one_line_error(r, "--set typo", "takes analysis_tokens")
    assert not (tmp_path / "bench").exists()


@pytest.mark.parametrize("command", [["evaluate", "--program", "country"], ["compile", "--program", "backstory"]])
def test_history_above_the_profile_is_refused(command: list[str], bench_small: Path) -> None:
    r = invoke(*command, "--history", "99999", "--data", bench_small, "--lm", "dummy")
    one_line_error(r, "--history 99999", "profile questions")


def test_history_of_the_whole_profile_is_accepted(bench_small: Path) -> None:
    r = invoke("evaluate", "--program", "country", "--history", "232", "--persons", "2", "--questions", "1",
               "--data", bench_small, "--resamples", "0", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output


# --- a hostile filesystem: one line naming the path -------------------------------------------------------------


@pytest.fixture
def mounted(tmp_path: Path):
    """Mount small tmpfs folders (full or read-only) for the test; skipped where mounting is not allowed."""
    mounts: list[Path] = []

    def mount(name: str, options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Write until the file system is full."""
    with open(folder / "filler", "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()


def test_full_disk_for_the_run_folder(mounted, bench_small: Path) -> None:
    full = mounted("full", "size=256k")
    fill(full)
    r = invoke("evaluate", "--program", "country", "--run-dir", full / "run", "--data", bench_small,
               "--persons", "2", "--questions", "1", "--resamples", "0")  # fmt: skip
    one_line_error(r, str(full), "No space left")


def test_full_disk_for_the_mlflow_store(mounted, bench_small: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = mounted("home", "size=256k")
    fill(home)
    monkeypatch.setenv("VALUESIM_HOME", str(home))
    r = invoke("evaluate", "--program", "country", "--data", bench_small, "--persons", "2", "--questions", "1",
               "--resamples", "0", "--run-dir", bench_small.parent / "run-full-store")  # fmt: skip
    line = one_line_error(r)
    assert str(home) in line and ("full" in line or "No space" in line), line


def test_read_only_output_folder(mounted, bench_small: Path, wvs_small: Path) -> None:
    readonly = mounted("readonly", "ro,size=64k")
    r = invoke("evaluate", "--program", "country", "--run-dir", readonly / "run", "--data", bench_small)
    one_line_error(r, str(readonly / "run"), "Read-only file system")
    r = invoke("data", "build", "--wvs", wvs_small, "--out", readonly / "benchmark")
    one_line_error(r, str(readonly), "Read-only file system")


@pytest.mark.parametrize("where", ["file", "under-file", "proc"])
def test_run_dir_that_cannot_be_a_folder(where: str, tmp_path: Path, bench_small: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("keep\n")
    run_dir = {"file": a_file, "under-file": a_file / "run", "proc": Path("/proc/valuesim-run")}[where]
    r = invoke("evaluate", "--program", "country", "--run-dir", run_dir, "--data", bench_small, "--persons", "2")
    one_line_error(r, str(run_dir if where != "under-file" else a_file))
    assert a_file.read_text() == "keep\n"


def test_empty_bench_state_left_by_a_full_disk(tmp_path: Path, bench_small: Path) -> None:
    out = tmp_path / "bench"
    out.mkdir()
    (out / "bench.json").write_text("")
    r = invoke("bench", "--programs", "country", "--history", "0", "--persons", "2", "--questions", "1",
               "--data", bench_small, "--out", out)  # fmt: skip
    one_line_error(r, str(out / "bench.json"), "empty")


# --- any --set input ends in settings or a one-line error -------------------------------------------------------

SETTING_KEYS = ["k", "threshold", "min_hits", "min_cell", "backstory_words", "analysis_tokens", "parallel", "model",
                "c", "max_iter", "seed", "embedder", "folds", "typo"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    program=st.sampled_from(sorted(PROGRAMS)),
    pairs=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(SETTING_KEYS), st.text(max_size=30)).map("=".join),
            st.tuples(st.sampled_from(SETTING_KEYS), st.from_regex(r"-?\d{1,12}(\.\d{1,4})?", fullmatch=True))
            .map("=".join),
            st.text(max_size=40),
        ),
        max_size=4,
    ),
)
def test_any_set_pairs_give_settings_or_one_error(program: str, pairs: list[str]) -> None:
    try:
        parsed = parse_settings(pairs)
    except typer.Exit as e:  # fail(): a one-line error, exit 1
        assert e.exit_code == 1
        return
    try:
        check_settings(program, parsed)
    except ValueSimError as e:
        assert "\n" not in str(e) and len(str(e)) < 400
        return
    model = settings_model(PROGRAMS[program])
    assert set(parsed) <= set(model.model_fields)  # accepted: only the program's own settings


def test_bench_refuses_a_history_above_the_profile_before_any_cell(tmp_path: Path, bench_small: Path) -> None:
    out = tmp_path / "bench"
    r = invoke("bench", "--programs", "country", "--history", "0,99999", "--persons", "2", "--questions", "1",
               "--data", bench_small, "--out", out)  # fmt: skip
    one_line_error(r, "--history 99999")
    assert not out.exists()  # no cell of history 0 ran first
