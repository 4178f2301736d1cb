"""A program's settings (`--set key=value`): declared on its __init__, each with its type and range
(`k: Annotated[int, Field(ge=1)] = 25`), and checked here before any work, for every command and a loaded program."""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

import pydantic

from valuesim import files
from valuesim.errors import ValueSimError
from valuesim.programs import PROGRAMS


def check_settings(name: str, settings: dict) -> None:
    """Each --set key must be a setting of the program (a parameter of its __init__ with a default) and its value
    of the declared type and range (`Annotated[int, Field(ge=1)]`), checked before any work: a bad value used to
    fail every prediction or stop deep inside the program."""
    model = settings_model(PROGRAMS[name])  # type: ignore[arg-type]  # classes are hashable
    try:
        model.model_validate(settings)
    except pydantic.ValidationError as e:
        error = e.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else "?"
        key = key if key.isidentifier() else files.quoted(key, 60)  # a key with a newline stays one line
        if error["type"] == "extra_forbidden":
            raise ValueSimError(
                f"--set {key}: program {name!r} takes {', '.join(sorted(model.model_fields)) or 'no settings'}"
            ) from None
        value = files.quoted(settings.get(key), 60)
        raise ValueSimError(f"--set {key}={value}: {error['msg'].lower()} (program {name!r})") from None


@functools.cache
def settings_model(program: Any) -> type[pydantic.BaseModel]:
    """A pydantic model of a program's settings, read from its __init__: each parameter with a default, its type
    hint (with any Field range) and default, except those `from_benchmark` passes itself (`wired`). Strict: no
    text for numbers, no true/false for numbers."""
    init = program.__init__  # the class's own; inspect.signature(class) would read dspy's metaclass __call__
    hints = typing.get_type_hints(init, include_extras=True)
    fields: dict[str, Any] = {
        n: (hints.get(n, Any), p.default)
        for n, p in inspect.signature(init).parameters.items()
        if p.default is not inspect.Parameter.empty and n not in getattr(program, "wired", ())
    }
    config = pydantic.ConfigDict(extra="forbid", strict=True, arbitrary_types_allowed=True)
    model: type[pydantic.BaseModel] = pydantic.create_model(f"{program.__name__}Settings", __config__=config, **fields)
    return model
