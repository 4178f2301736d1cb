"""Reading and writing the project's own files safely.

Every file ValueSim writes that a later run reads back (manifests, run.json, bench.json, compile.json, saved
programs, reports) goes through `write_atomic`: written beside the target, flushed to disk, then renamed over it, so
a full disk or a kill leaves the old file or the new one, never a truncated or 0-byte file.

Every JSON file a user hands us (person files) or that a run left behind (run.json, valuesim.json, bench.json) is
read with `read_json`: at most `MAX_JSON_BYTES`, strict UTF-8, nested at most `MAX_DEPTH` deep, and any problem is
one `ValueSimError` naming the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from valuesim.errors import ValueSimError

MAX_JSON_BYTES = 10_000_000  # a person file or a run's state is kilobytes; 10 MB is far past any real one
MAX_DEPTH = 32  # person files nest 2 deep, saved programs about 8
QUOTE_CHARS = 200  # how much of a bad value an error line shows


class FileFormatError(ValueSimError):
    """A file that is too big, not UTF-8, not JSON, or nested too deeply; the message names the file."""


def quoted(value: Any, limit: int = QUOTE_CHARS) -> str:
    """repr(value), cut to about `limit` characters, for error lines (a 5 MB field is not echoed whole)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int of more than 4,300 digits, a structure nested too deeply
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def first_line(error: BaseException, limit: int = QUOTE_CHARS) -> str:
    """An exception's message for an error line: its first line, cut to `limit` characters (its type if empty)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write `data` to `path` beside it, fsync, rename over it; on failure the old file stays and no temp remains."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename is None:  # a failed write() names no file: name the one the user will look for
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any, **dumps: Any) -> None:
    """`obj` as indented strict JSON (see strict_json), atomically (see write_atomic)."""
    write_atomic(path, strict_json(obj, **dumps) + "\n")


def strict_json(obj: Any, default: Callable[[Any], Any] | None = None, indent: int | None = 1, **dumps: Any) -> str:
    """`obj` as strict JSON (RFC 8259), which JavaScript's JSON.parse, Go and jq read: NaN and +/-Infinity (Python
    floats, numpy floats, pandas' NaN cells) become null, since Python's json would write the non-standard tokens
    NaN/Infinity. `default` converts what json cannot (DataFrames, numpy scalars, paths; see `jsonable`); the
    undefined values are replaced after that conversion, so a DataFrame's NaN cells become null too."""
    try:  # the common case, one pass: nothing undefined to replace (allow_nan=False raises on the first)
        return json.dumps(obj, default=default or jsonable, indent=indent, allow_nan=False, **dumps)
    except ValueError:
        pass
    loose = json.dumps(obj, default=default or jsonable, allow_nan=True)
    # one round trip: json writes NaN/Infinity wherever they sit (any nesting, any float subclass), and parse_constant
    # sees exactly those tokens, so nothing is missed and every other value comes back unchanged
    clean = json.loads(loose, parse_constant=lambda _token: None)
    return json.dumps(clean, indent=indent, allow_nan=False, **dumps)


def jsonable(o: Any) -> Any:
    """What json.dumps cannot write, as something it can: numpy scalars as Python numbers, DataFrames as records,
    Series as dicts, anything else as its str (paths, dates)."""
    if hasattr(o, "dtype") and hasattr(o, "item") and getattr(o, "ndim", None) == 0:
        return o.item()  # numpy scalar: np.int64 would otherwise be written as the string "3"
    if hasattr(o, "tolist") and hasattr(o, "ndim") and not hasattr(o, "to_dict"):
        return o.tolist()  # numpy array
    if hasattr(o, "to_dict"):
        return o.to_dict(orient="records") if hasattr(o, "columns") else o.to_dict()
    return str(o)


def read_text(path: str | Path, limit: int = MAX_JSON_BYTES, what: str = "file") -> str:
    """A small text file as strict UTF-8 (a leading BOM is dropped), refused when it is not a regular file or is
    larger than `limit` bytes. Reads at most limit + 1 bytes, so /dev/zero or a huge file cannot exhaust memory."""
    path = Path(path)
    if path.is_dir():
        raise FileFormatError(f"{path}: is a folder, expected a {what}")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise FileFormatError(f"{path}: not found") from None
    except OSError as e:
        raise FileFormatError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(raw) > limit:
        raise FileFormatError(f"{path}: larger than {limit:,} bytes; not a {what}")
    try:
        return raw.decode("utf-8-sig")  # a BOM (Windows editors) is not an error
    except UnicodeDecodeError as e:
        raise FileFormatError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None


def read_json(path: str | Path, limit: int = MAX_JSON_BYTES, what: str = "JSON file") -> Any:
    """A JSON file through read_text's checks, parsed, nested at most MAX_DEPTH deep."""
    text = read_text(path, limit, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FileFormatError(f"{path}: not valid JSON ({e}); {_hint(text)}") from None
    except RecursionError:
        raise FileFormatError(f"{path}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # a number of more than 4,300 digits (int's own limit)
        raise FileFormatError(f"{path}: not valid JSON ({str(e).split(';')[0][:120]})") from None
    if depth(data) > MAX_DEPTH:
        raise FileFormatError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    return data


def _hint(text: str) -> str:
    return "the file is empty (a write that did not finish?)" if not text.strip() else "fix or remove it"


def depth(obj: Any) -> int:
    """How deeply lists and objects nest in `obj` (a scalar is 0), without recursion."""
    deepest, stack = 0, [(obj, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
