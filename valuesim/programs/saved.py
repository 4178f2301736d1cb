"""Saving and loading programs: DSPy's JSON state plus the settings that rebuild the module.

A saved program is a folder:
    program.json    DSPy state (`program.save`): instructions and demos of every predictor
    valuesim.json   {"program": <name>, "settings": {...}, "lm": {...}, "dspy": <version>}

`load(uri)` accepts such a folder, `runs:/<run_id>` (the folder logged with an MLflow run) and `models:/...` (a model
logged with MLflow's dspy flavor: its run's folder is loaded, never the pickle unless asked).
"""

from __future__ import annotations

import json
from pathlib import Path

import dspy

from valuesim import files
from valuesim.errors import ProgramLoadError
from valuesim.programs import PROGRAMS


def save_program(
    program: dspy.Module, name: str, path: str | Path, settings: dict | None = None, lm: dict | None = None
) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    program.save(str(path / "program.json"))
    meta = {"program": name, "settings": settings or {}, "lm": lm or {}, "dspy": dspy.__version__}
    (path / "valuesim.json").write_text(files.strict_json(meta))
    return path


def load_program(path: str | Path) -> tuple[dspy.Module, dict]:
    """Rebuild the module from valuesim.json, then load its DSPy state. Returns (program, meta)."""
    path = Path(path)
    meta_file, state_file = path / "valuesim.json", path / "program.json"
    for f in (meta_file, state_file):
        if not f.exists():
            raise ProgramLoadError(f"{path}: not a saved ValueSim program (missing {f.name})")
    try:
        meta = json.loads(meta_file.read_text())
        name = meta["program"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ProgramLoadError(f"{meta_file}: corrupt ({type(e).__name__}: {e})") from None
    if name not in PROGRAMS:
        raise ProgramLoadError(f"{meta_file}: unknown program {name!r}")
    program = PROGRAMS[name](**meta.get("settings", {}))
    try:
        program.load(str(state_file))
    except Exception as e:  # noqa: BLE001 - DSPy raises many kinds for a bad state file
        raise ProgramLoadError(f"{state_file}: cannot be loaded into {name} ({type(e).__name__}: {e})") from None
    check_fields(program, json.loads(state_file.read_text()), state_file)
    return program, meta


def check_fields(program: dspy.Module, state: dict, state_file: Path) -> None:
    """Refuse a state saved for other signature fields: DSPy pairs saved and current fields by position, so a
    predictor whose fields changed (the coordinator's `views` became six typed fields) would load shifted field
    descriptions without an error."""
    for name, predictor in program.named_predictors():
        saved = state.get(name, {}).get("signature", {}).get("fields")
        if saved is not None and len(saved) != len(predictor.signature.fields):
            raise ProgramLoadError(
                f"{state_file}: predictor {name!r} was saved with {len(saved)} fields, its signature "
                f"{predictor.signature.__name__} now has {len(predictor.signature.fields)} (saved by an older "
                "ValueSim); compile it again"
            )
