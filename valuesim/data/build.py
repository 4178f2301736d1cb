"""`valuesim data build`: read the WVS files, split respondents, write both protocols' rows, and put the benchmark
in place atomically, never over a folder it did not build (see `check_out`)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from datasets import Dataset, DatasetDict
from datasets.utils.logging import disable_progress_bar, enable_progress_bar, is_progress_bar_enabled

from valuesim import config, files
from valuesim.data.benchmark import DEFAULT_DIR, PROTOCOLS, SPLITS
from valuesim.data.catalog import Catalog
from valuesim.data.ingest import IngestReport, fingerprint, read_wvs_dir
from valuesim.data.rows import write_rows
from valuesim.errors import NotFoundError, ValueSimError
from valuesim.progress import bars

# What a build writes into its folder, and the lock a running build holds in its temporary folder
BENCHMARK_ENTRIES = {"manifest.json", "catalog.json", "respondents", *PROTOCOLS}
BUILDING_LOCK = ".building.lock"
MIN_MAPPED_SHARE = 0.99  # below this share of answered cells mapped, a build is refused unless forced


def build(
    wvs_dir: str | Path,
    out: str | Path = DEFAULT_DIR,
    seed: int = 0,
    report_unknown: bool = False,
    force: bool = False,
    progress: bool = False,
) -> dict:
    """Read the WVS files, split respondents and write both protocols. Returns the manifest. `progress`: bars on
    stderr for reading, writing and saving.

    Atomic: everything is written to a temporary folder beside `out` and renamed into place only when complete,
    so a failed or killed build leaves the previous benchmark whole. Refuses (unless `force`) to replace a
    benchmark built from other inputs, and to write one in which under 99% of the answered cells mapped.
    """
    t0 = time.perf_counter()
    wvs_dir, out = Path(wvs_dir), Path(out).resolve()  # resolved: `--out .` is the folder it names, not ''
    check_out(out)  # before the minutes of reading: a folder we may not write into is refused at once
    catalog = Catalog.from_wvs(wvs_dir)
    folds = read_folds(wvs_dir / "protocol", catalog)
    cache = config.cache_dir() / "wvs"
    with bars(progress) as bar:
        table, report = read_wvs_dir(wvs_dir, catalog, cache_dir=cache, collect_unknown=report_unknown, progress=bar)
    if table.empty:
        raise ValueSimError(f"{wvs_dir}: the respondent files hold no respondents")
    if report.mapped_share < MIN_MAPPED_SHARE and not force:
        raise ValueSimError(
            f"only {report.mapped_share:.2%} of the answered cells map to an option (below {MIN_MAPPED_SHARE:.0%}): "
            f"{suspect_columns(report)}; fix the files or aliases, or build anyway with --force"
        )
    table["split"] = assign_splits(table, seed)
    inputs = inputs_fingerprint(table.drop(columns="split"), folds, seed)
    fp = f"{hashlib.sha256((inputs + code_version()).encode()).hexdigest()[:12]}-s{seed}"
    check_out(out, inputs, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_builds(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-building-", dir=out.parent))
    alive = open(tmp / BUILDING_LOCK, "w")  # held while this build runs: the next build sees it is not dead
    fcntl.flock(alive, fcntl.LOCK_EX)
    # datasets' own bars (saving) are hidden with ours; never forced on (HF_DATASETS_DISABLE_PROGRESS_BARS wins)
    hide = not progress and is_progress_bar_enabled()
    if hide:
        disable_progress_bar()
    try:
        catalog.save(tmp / "catalog.json")
        Dataset.from_pandas(table, preserve_index=False).save_to_disk(str(tmp / "respondents"))
        (tmp / ".rows").mkdir()
        for protocol in PROTOCOLS:
            arrows = {s: tmp / ".rows" / f"{protocol}-{s}.arrow" for s in SPLITS}
            with bars(progress) as bar:
                for s, path in arrows.items():
                    write_rows(table[table["split"] == s], catalog, protocol, folds, seed, path, bar)
            # Arrow files written chunk by chunk, saved in datasets' layout (a copy: its format stays its own)
            DatasetDict({s: Dataset.from_file(str(f)) for s, f in arrows.items()}).save_to_disk(str(tmp / protocol))
        shutil.rmtree(tmp / ".rows")
        by_country = table.groupby("country")["split"].value_counts().unstack().fillna(0).astype(int)
        manifest = {
            "wvs_dir": str(wvs_dir.resolve()),
            "seed": seed,
            "fingerprint": fp,
            "inputs": inputs,
            "code_version": code_version(),
            "respondents": len(table),
            "splits": {s: int((table["split"] == s).sum()) for s in SPLITS},
            "countries": by_country.to_dict("index"),
            "folds": len(folds),
            "ingest": {k: v for k, v in asdict(report).items() if k not in ("unmapped", "looks_like")}
            | {"mapped_share": report.mapped_share, "unmapped": len(report.unmapped)},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        (tmp / "manifest.json").write_text(files.strict_json(manifest))
        (tmp / BUILDING_LOCK).unlink()  # not part of the benchmark; the lock itself is held until the end
        replace_dir(tmp, out)
    finally:
        if hide:
            enable_progress_bar()
        shutil.rmtree(tmp, ignore_errors=True)
        alive.close()
    manifest["report"] = report
    return manifest


def check_out(out: Path, inputs: str | None = None, force: bool = False) -> None:
    """Refuse an --out we may not replace: a file, a folder that is neither empty nor a benchmark, a benchmark
    holding files a build does not write, or (without `force`) a benchmark built from other `inputs`."""
    if out.exists() and not out.is_dir():
        raise ValueSimError(f"{out} is a file, not a folder; give --out a new or empty folder")
    if not out.is_dir():
        return
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    if "manifest.json" not in entries:
        raise ValueSimError(
            f"{out} is not empty and holds no benchmark (no manifest.json); data build writes only into a new or "
            "empty folder or over a benchmark it built, so choose another --out (--force does not change this)"
        )
    foreign = sorted(entries - BENCHMARK_ENTRIES)
    if foreign:
        raise ValueSimError(
            f"{out} holds files a build did not write ({', '.join(foreign[:5])}); a rebuild would delete them, so "
            "move them out or choose another --out"
        )
    if inputs is None or force:
        return
    old = files.read_json(out / "manifest.json", what="benchmark manifest")
    if not isinstance(old, dict):
        raise ValueSimError(f"{out / 'manifest.json'}: not a benchmark manifest; choose another --out")
    if old.get("inputs") != inputs:  # the same inputs with newer code is a rebuild, not another benchmark
        raise ValueSimError(
            f"{out} holds another benchmark (built from {old.get('wvs_dir')}, seed {old.get('seed')}, "
            f"fingerprint {old.get('fingerprint')}); choose another --out or replace it with --force"
        )


def remove_dead_builds(out: Path) -> list[Path]:
    """Delete the building folders beside `out` that no running build holds (left by killed builds), and the
    folders a replace moved aside but could not delete. Returns what was removed."""
    removed = []
    for tmp in out.parent.glob(f".{out.name}-building-*"):
        try:
            with open(tmp / BUILDING_LOCK) as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a build is writing it right now
            continue
        except OSError:  # no lock file: a build of an older version, or one that is about to finish
            if not tmp.exists() or time.time() - tmp.stat().st_mtime < 3600:
                continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    for old in out.parent.glob(f".{out.name}-old-*"):
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    return removed


def replace_dir(new: Path, target: Path) -> None:
    """Put `new` at `target`: two renames on one file system, so readers see the old or the new, never a mix."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def code_version() -> str:
    """valuesim's version plus a hash of the files that shape a benchmark (ingest, catalog, statement tables, split)."""
    from importlib.metadata import version

    here = Path(__file__).parent
    h = hashlib.sha256()
    code = ("benchmark.py", "build.py", "ingest.py", "raw.py", "stat_files.py", "r_files.py", "labels.py", "rows.py",
            "shuffle.py", "catalog.py", "statements.py", "aliases.py")  # fmt: skip
    for name in (*code, "statements.toml"):
        h.update((here / name).read_bytes())
    return f"{version('valuesim')}+{h.hexdigest()[:8]}"


def inputs_fingerprint(table: pd.DataFrame, folds: dict, seed: int) -> str:
    """What the user's inputs make of a benchmark: the respondents' answers, the fold files and the seed. The
    benchmark's fingerprint adds the code version (`code_version`)."""
    h = hashlib.sha256(fingerprint(table).encode())
    h.update(json.dumps(folds, sort_keys=True).encode())
    h.update(str(seed).encode())
    return h.hexdigest()[:16]


def suspect_columns(report: IngestReport, limit: int = 5) -> str:
    """The columns with most unmapped cells, and where their values are another column's options, which one."""
    by_column: dict[tuple[str, str], int] = {}
    for u in report.unmapped:
        by_column[(u.file, u.column)] = by_column.get((u.file, u.column), 0) + u.count
    worst = sorted(by_column.items(), key=lambda kv: -kv[1])[:limit]
    parts = []
    for (file, column), n in worst:
        like = report.looks_like.get(f"{file}|{column}")
        parts.append(
            f"{Path(file).name} column {column!r}: {n} cells" + (f" (its values are {like}'s options)" if like else "")
        )
    more = len(by_column) - len(worst)
    return "; ".join(parts) + (f"; and {more} more columns" if more > 0 else "")


def read_folds(protocol_dir: Path, catalog: Catalog | None = None) -> dict[int, tuple[list[str], list[str]]]:
    """The fold files, validated before anything is written: fields present, fold numbers unique, each fold's
    profile and held-out sets disjoint, codes known, and the held-out sets disjoint across folds."""
    folds: dict[int, tuple[list[str], list[str]]] = {}
    for path in sorted(protocol_dir.glob("fold_*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueSimError(f"{path}: not valid JSON ({e})") from None
        for key in ("fold", "train_set", "test_set"):
            if key not in data:
                raise ValueSimError(f"{path}: missing field {key!r}")
        fold, train, test = int(data["fold"]), list(data["train_set"]), list(data["test_set"])
        if fold in folds:
            raise ValueSimError(f"{path}: fold {fold} appears in two files")
        both = sorted(set(train) & set(test))
        if both:
            raise ValueSimError(f"{path}: {len(both)} questions are both profile and held out (a leak): {both[:5]}")
        unknown = [q for q in [*train, *test] if catalog is not None and q not in catalog]
        if unknown:
            raise ValueSimError(f"{path}: unknown question codes {unknown[:5]} (expected Q1-Q290)")
        for other, (_, other_test) in folds.items():
            shared = sorted(set(test) & set(other_test))
            if shared:
                raise ValueSimError(f"{path}: held-out questions {shared[:5]} are held out in fold {other} too")
        folds[fold] = (train, test)
    if not folds:
        raise NotFoundError(f"{protocol_dir}: no fold_*.json files")
    return dict(sorted(folds.items()))


def assign_splits(table: pd.DataFrame, seed: int) -> list[str]:
    """Train/dev/test per country (stratified), from a seeded shuffle of each country's respondents."""
    split = pd.Series("", index=table.index)
    person_id = dict(zip(table.index, table["person_id"], strict=True))  # table.at per row: 6 s on the whole WVS-7
    for country, idx in table.groupby("country").groups.items():
        ids = sorted(idx, key=person_id.__getitem__)
        random.Random(f"{seed}-{country}").shuffle(ids)
        n_train, n_dev = round(len(ids) * SPLITS["train"]), round(len(ids) * SPLITS["dev"])
        split[ids[:n_train]] = "train"
        split[ids[n_train : n_train + n_dev]] = "dev"
        split[ids[n_train + n_dev :]] = "test"
    return split.tolist()
