"""A run folder belongs to one run.

`claim(folder, identity)` writes `run.json` (what the run evaluates: program, settings, LM and its file, data
selection, dataset fingerprint, code version) when the folder is new, and refuses a folder whose identity differs,
naming the fields, so `--resume` and bench reruns can never label one run's predictions with another's parameters.
It also holds an exclusive lock on the folder for as long as the run lasts, so a second process pointed at the same
folder fails at once instead of mixing its predictions in. `run.json` is read with valuesim.files.read_json (bounded,
strict UTF-8) and written atomically; a damaged one (empty, not JSON, not an object) is one error naming it.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from valuesim import files
from valuesim.errors import ValueSimError
from valuesim.files import FileFormatError, quoted, read_json, write_json

IDENTITY_FILE = "run.json"


@contextmanager
def claim(folder: Path, identity: dict[str, Any]) -> Iterator[Path]:
    """Lock `folder` and check (or record) that it holds the run `identity` describes."""
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        path = folder / IDENTITY_FILE
        identity = json.loads(files.strict_json(identity, default=str))  # the form it has once read back
        if path.exists():
            stored = _read_identity(path)
            differ = sorted(k for k in stored.keys() | identity.keys() if stored.get(k) != identity.get(k))
            if differ:
                shown = "; ".join(
                    f"{_field(k)}: {quoted(stored.get(k), 100)} there, {quoted(identity.get(k), 100)} now"
                    for k in differ[:6]
                )
                raise ValueSimError(
                    f"{folder} holds another run ({shown}); resume it with the same settings or use another folder"
                )
        elif any(folder.iterdir()) and (folder / "predictions.sqlite").exists():
            raise ValueSimError(f"{folder} holds predictions of a run without {IDENTITY_FILE}; use another folder")
        else:
            write_json(path, dict(sorted(identity.items())))
        yield folder


def _field(key: str) -> str:
    """A run.json key for an error line: as is when it looks like a field name, else quoted (no newline, cut)."""
    return key if re.fullmatch(r"[\w.-]{1,60}", key) else quoted(key, 60)


def _read_identity(path: Path) -> dict[str, Any]:
    """A run folder's run.json; a damaged one (empty, not UTF-8 or JSON, not an object) is one ValueSimError."""
    try:
        stored = read_json(path, what="run identity (run.json)")
    except FileFormatError as e:
        raise ValueSimError(f"{e} (a damaged run identity: use another --run-dir)") from None
    if not isinstance(stored, dict):
        raise ValueSimError(
            f"{path}: a damaged run identity (a JSON {type(stored).__name__}, not an object); use another --run-dir"
        )
    return stored


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
