"""`--lm dummy`: an LM that needs no model. It answers every signature with the first option, so any program and
the whole harness (data, adapter, store, metrics, MLflow) can be dry-run in seconds.

It is DSPy's engine hook (`dspy.LM(model, engine=...)`, as the llama.cpp engine in lm.py) rather than
`dspy.utils.DummyLM`: DummyLM replays answers scripted in advance and never sees the output schema, while this
engine reads the schema JSONAdapter sends (the `answer` field narrowed to the question's option codes) and fills it:
an enum with its first value, text with a fixed sentence saying it is a dry run, numbers with 0.
"""

from __future__ import annotations

import json
from typing import Any

import dspy
from dspy.lm15 import Message, Request, Response, TextPart, Usage, response_to_events

DUMMY = "dummy"
DRY_RUN_TEXT = "Dry run (--lm dummy): no model wrote this text."


def first_value(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """The value a dry run gives a JSON-schema field: an enum's first member, a fixed text, 0, empty containers."""
    if "$ref" in schema:
        return first_value(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return first_value(schema[key][0], defs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: first_value(sub, defs) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return DRY_RUN_TEXT[: schema.get("maxLength", len(DRY_RUN_TEXT))]


class FirstOptionEngine:
    """DSPy engine (`complete(Request) -> Response`) answering each call's response schema with `first_value`.

    Without a schema (a plain prompt, e.g. a reachability ping) it returns the dry-run sentence."""

    # Capability hints DSPy reads from a custom engine: with them JSONAdapter sends the signature's schema.
    supports_response_schema = True
    supports_function_calling = False
    supports_reasoning = False
    supported_params = frozenset({"temperature", "max_tokens", "response_format"})

    def __init__(self) -> None:
        self.calls = 0  # how many requests it answered (tests count LM calls with it)

    def complete(self, request: Request) -> Response:
        fmt = request.config.response_format or {}
        schema = fmt.get("schema") if fmt.get("type") == "json_schema" else None
        text = json.dumps(first_value(schema, schema.get("$defs", {}))) if schema else DRY_RUN_TEXT
        self.calls += 1
        return Response(
            id=None,
            model=DUMMY,
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0),
        )

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


class AsyncFirstOptionEngine:
    def __init__(self, sync: FirstOptionEngine) -> None:
        self.sync = sync

    async def complete(self, request: Request) -> Response:
        return self.sync.complete(request)

    async def stream(self, request: Request) -> Any:
        for event in self.sync.stream(request):
            yield event

    async def aclose(self) -> None:
        pass


def dummy_lm(temperature: float = 0.0, max_tokens: int = 512, **kw: Any) -> dspy.LM:
    """`--lm dummy`. Never cached: answers cost nothing, and they must not fill DSPy's cache."""
    kw["cache"] = False
    engine = FirstOptionEngine()
    return dspy.LM(
        DUMMY, engine=engine, async_engine=AsyncFirstOptionEngine(engine), temperature=temperature,
        max_tokens=max_tokens, **kw,
    )  # fmt: skip
