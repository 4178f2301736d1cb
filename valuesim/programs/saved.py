"""Saving and loading programs: DSPy's JSON state plus the settings that rebuild the module.

A saved program is a folder:
    program.json    DSPy state (`program.save`): instructions and demos of every predictor
    valuesim.json   {"program": <name>, "settings": {...}, "lm": {...}, "dspy": <version>}

`load(uri)` accepts such a folder, `runs:/<run_id>` (the folder logged with an MLflow run) and `models:/...` (the
model a compile logs: its run's folder is loaded). ServedProgram is what that MLflow model runs
(valuesim/served_model.py).

valuesim.json is read with valuesim.files.read_json (bounded, strict UTF-8) and its settings are checked like --set
(valuesim.programs.settings.check_settings) before the program is built: a damaged file is one ProgramLoadError
naming it.
Both files are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dspy

from valuesim.errors import ProgramLoadError, ValueSimError
from valuesim.files import FileFormatError, quoted, read_json, write_atomic, write_json
from valuesim.programs import PROGRAMS, needs_lm
from valuesim.programs.settings import check_settings


def save_program(
    program: dspy.Module, name: str, path: str | Path, settings: dict | None = None, lm: dict | None = None
) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".program.{os.getpid()}.json"  # DSPy writes it; then moved into place atomically
    try:
        program.save(str(tmp))
        write_atomic(path / "program.json", tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"program": name, "settings": settings or {}, "lm": lm or {}, "dspy": dspy.__version__}
    write_json(path / "valuesim.json", meta)
    return path


def load_program(path: str | Path) -> tuple[dspy.Module, dict]:
    """Rebuild the module from valuesim.json, then load its DSPy state. Returns (program, meta)."""
    path = Path(path)
    meta_file, state_file = path / "valuesim.json", path / "program.json"
    for f in (meta_file, state_file):
        if not f.exists():
            raise ProgramLoadError(f"{path}: not a saved ValueSim program (missing {f.name})")
    meta = read_meta(meta_file)
    name, settings = meta["program"], meta["settings"]
    try:
        program = PROGRAMS[name](**settings)
    except (TypeError, ValueError) as e:  # a value check_settings let through that the program itself refuses
        raise ProgramLoadError(f"{meta_file}: field 'settings': {name} refuses them ({quoted(str(e))})") from None
    try:
        state = read_json(state_file, what="saved DSPy state")  # bounded before DSPy reads it whole
    except FileFormatError as e:
        raise ProgramLoadError(f"{e}: cannot be loaded into {name}") from None
    try:
        program.load(str(state_file))
    except Exception as e:  # noqa: BLE001 - DSPy raises many kinds for a bad state file
        raise ProgramLoadError(
            f"{state_file}: cannot be loaded into {name} ({type(e).__name__}: {quoted(str(e))})"
        ) from None
    check_fields(program, state, state_file)
    return program, meta


def read_meta(meta_file: Path) -> dict:
    """valuesim.json, checked: an object naming a saved (LM) program and settings that program takes, with
    `settings` defaulting to {}. Anything else is one ProgramLoadError naming the file."""
    try:
        meta = read_json(meta_file, what="valuesim.json of a saved program")
    except FileFormatError as e:
        raise ProgramLoadError(f"{e} (a corrupt saved program)") from None
    if not isinstance(meta, dict):
        raise ProgramLoadError(f"{meta_file}: corrupt: expected a JSON object, got a {type(meta).__name__}")
    if "program" not in meta:
        raise ProgramLoadError(f"{meta_file}: corrupt: no 'program' field")
    name = meta["program"]
    if not isinstance(name, str) or name not in PROGRAMS:
        raise ProgramLoadError(f"{meta_file}: unknown program {quoted(name)} (one of {', '.join(PROGRAMS)})")
    if not needs_lm(name):
        raise ProgramLoadError(f"{meta_file}: {name!r} is fitted on the benchmark, never saved; run it by name")
    settings = meta.get("settings", {})
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ProgramLoadError(
            f"{meta_file}: field 'settings' must be an object of name -> value, got {quoted(settings)}"
        )
    odd = [key for key in settings if not key.isidentifier()]
    if odd:
        raise ProgramLoadError(f"{meta_file}: field 'settings': {quoted(odd[0], 60)} is no setting of {name!r}")
    try:
        check_settings(name, settings)
    except ValueSimError as e:
        reason = " ".join(str(e).removeprefix("--set ").split())  # one line whatever the value held
        reason = reason if len(reason) <= 300 else f"{reason[:300]}..."  # a 5 MB key is not echoed whole
        raise ProgramLoadError(f"{meta_file}: field 'settings': {reason}") from None
    return {**meta, "settings": settings}


def check_fields(program: dspy.Module, state: Any, state_file: Path) -> None:
    """Refuse a state saved for other signature fields: DSPy pairs saved and current fields by position, so a
    predictor whose fields changed (the coordinator's `views` became six typed fields) would load shifted field
    descriptions without an error."""
    for name, predictor in program.named_predictors():
        entry = state.get(name) if isinstance(state, dict) else None
        signature = entry.get("signature") if isinstance(entry, dict) else None
        saved = signature.get("fields") if isinstance(signature, dict) else None
        if isinstance(saved, list) and len(saved) != len(predictor.signature.fields):
            raise ProgramLoadError(
                f"{state_file}: predictor {name!r} was saved with {len(saved)} fields, its signature "
                f"{predictor.signature.__name__} now has {len(predictor.signature.fields)} (saved by an older "
                "ValueSim); compile it again"
            )


SERVED_INPUTS = ("demographics", "profile", "question", "options")


class ServedProgram:
    """A saved program as the logged MLflow model runs it (valuesim/served_model.py): rows of a person and a
    question, {demographics, profile, question, options} as `valuesim.inputs` builds them, in; one answer (an
    option code) per row out. `lm` is a model as `--lm` takes it, built and checked as `valuesim.load` builds it."""

    def __init__(self, folder: Path, lm: str | None, api_base: str | None = None) -> None:
        import valuesim

        self.program = valuesim.load(folder, lm=lm, api_base=api_base)

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
        answers = []
        for i, row in enumerate(rows):
            missing = [key for key in SERVED_INPUTS if row.get(key) is None]
            if missing:
                raise ValueSimError(
                    f"row {i}: missing {', '.join(missing)} (each row is {{{', '.join(SERVED_INPUTS)}}})"
                )
            answers.append({"answer": str(self.program(**{key: row[key] for key in SERVED_INPUTS}).answer)})
        return answers
