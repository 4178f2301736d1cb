"""A run folder belongs to one run.

`claim(folder, identity)` writes `run.json` (what the run evaluates: program, settings, LM and its file, data
selection, dataset fingerprint, code version) when the folder is new, and refuses a folder whose identity differs,
naming the fields, so `--resume` and bench reruns can never label one run's predictions with another's parameters.
It also holds an exclusive lock on the folder for as long as the run lasts, so a second process pointed at the same
folder fails at once instead of mixing its predictions in.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from valuesim import files
from valuesim.errors import ValueSimError

IDENTITY_FILE = "run.json"


@contextmanager
def claim(folder: Path, identity: dict[str, Any]) -> Iterator[Path]:
    """Lock `folder` and check (or record) that it holds the run `identity` describes."""
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        path = folder / IDENTITY_FILE
        identity = json.loads(files.strict_json(identity, default=str))  # the form it has once read back
        if path.exists():
            try:
                stored = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ValueSimError(f"{path}: corrupt run identity ({e}); use another --run-dir") from None
            differ = sorted(k for k in stored.keys() | identity.keys() if stored.get(k) != identity.get(k))
            if differ:
                shown = "; ".join(f"{k}: {stored.get(k)!r} there, {identity.get(k)!r} now" for k in differ[:6])
                raise ValueSimError(
                    f"{folder} holds another run ({shown}); resume it with the same settings or use another folder"
                )
        elif any(folder.iterdir()) and (folder / "predictions.sqlite").exists():
            raise ValueSimError(f"{folder} holds predictions of a run without {IDENTITY_FILE}; use another folder")
        else:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(files.strict_json(identity, default=str, sort_keys=True))
            os.replace(tmp, path)
        yield folder


@contextmanager
def _locked(folder: Path) -> Iterator[IO[str]]:
    with open(folder / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueSimError(
                f"{folder} is in use by another valuesim process; wait for it or use another folder"
            ) from None
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
