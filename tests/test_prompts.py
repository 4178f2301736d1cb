"""Byte snapshots of every prompt: any change to what a model is sent shows up in review as a diff of a text file.

- `snapshots/signatures/<Signature>.txt`: the messages `OptionsAdapter.format` renders for each signature, for one
  fixed person and question (the narrowed signature, as the programs call it).
- `snapshots/programs/<program>.txt`: every request a program sends for one person and one question, in call order,
  as it reaches the LM engine (DSPy's lm15 Request: messages, max_tokens, temperature, the response_format with the
  option-constrained JSON schema). The engine declares the embedded llama.cpp engine's capability hints, so the
  JSON adapter sends what it sends to `--lm gemma`. The person comes from the synthetic catalog
  (valuesim/testing/synthetic.py) through make_person/make_example, so statement rendering is covered too; the LM's
  replies are fixed, so later prompts (the backstory, the views in the coordinator's) are deterministic.

All inputs are synthetic (never WVS rows: these files are committed). A test fails on any byte of difference and
prints the diff. After a prompt change on purpose, rewrite the files and commit them with the change:

    VALUESIM_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_prompts.py -q
"""

from __future__ import annotations

import difflib
import json
import os
import zlib
from pathlib import Path

import dspy
import numpy as np
import pytest
from dspy.lm15 import Message, Request, Response, Usage
from helpers import SIGNATURES, module_of

from valuesim.data.benchmark import make_example, make_person
from valuesim.data.catalog import Catalog
from valuesim.lm import LlamaCppEngine
from valuesim.programs import PROGRAMS
from valuesim.programs.options import OptionsAdapter, with_options
from valuesim.testing.synthetic_codebook import write_metadata

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("VALUESIM_UPDATE_SNAPSHOTS") == "1"


def check_snapshot(relative: str, text: str) -> None:
    """Compare `text` with the stored file byte for byte (or rewrite it under VALUESIM_UPDATE_SNAPSHOTS=1)."""
    path = SNAPSHOTS / relative
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
        return
    assert path.exists(), f"{path} missing; create it with VALUESIM_UPDATE_SNAPSHOTS=1"
    stored = path.read_bytes().decode()
    if stored != text:
        diff = "".join(
            difflib.unified_diff(
                stored.splitlines(keepends=True), text.splitlines(keepends=True), f"{relative} (stored)", "rendered"
            )
        )
        pytest.fail(f"prompt changed; if on purpose, rerun with VALUESIM_UPDATE_SNAPSHOTS=1\n{diff}")


def messages_text(messages: list[dict]) -> str:
    """The layout of the MLflow prompt artifacts (valuesim.tracking.log_prompts)."""
    return "\n\n".join(f"--- {m['role']} ---\n{m['content']}" for m in messages) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Signatures: one person, one question, the adapter's messages

QUESTION = "How important is family in your life?"
OPTIONS = {"1": "Very important", "2": "Rather important", "3": "Not very important", "4": "Not at all important"}
BACKSTORY = (
    "You grew up in Osaka with two brothers. Family is very important to you, and you go to the temple once a year."
)
# Every input field of every signature, by name; a signature's inputs are the fields it declares.
FIELD_VALUES = {
    "demographics": ["You live in Japan.", "You are a woman.", "You are 34 years old."],
    "profile": [
        "Family is very important in your life.",
        "You attend religious services once a year.",
        "You have quite a lot of confidence in the police.",
    ],
    "word_budget": 120,
    "backstory": BACKSTORY,
    "question": QUESTION,
    "options": OPTIONS,
    "cognitive_answer": "1",
    "cognitive_analysis": "You hold that family comes first.",
    "affective_answer": "2",
    "affective_analysis": "You feel close to your brothers but far from your parents.",
    "behavioral_answer": "1",
    "behavioral_analysis": "You visit your family every week.",
}


@pytest.mark.parametrize("signature", list(SIGNATURES.values()), ids=lambda s: s.__name__)
def test_signature_prompt(signature: type[dspy.Signature]) -> None:
    missing = [name for name in signature.input_fields if name not in FIELD_VALUES]
    assert not missing, f"add values for {missing} to FIELD_VALUES"
    inputs = {name: FIELD_VALUES[name] for name in signature.input_fields}
    file = f"signatures/{signature.__name__}.txt"
    if "answer" in signature.output_fields:
        signature = with_options(signature, OPTIONS)  # as the programs call it
    messages = OptionsAdapter().format(signature, demos=[], inputs=inputs)
    check_snapshot(file, messages_text(messages))


# ---------------------------------------------------------------------------------------------------------------
# Programs: every request, as the engine receives it


class RecordingEngine:
    """A DSPy engine that records each Request and replies with fixed JSON per module (helpers.module_of)."""

    # The embedded engine's capability hints: the JSON adapter then sends the answer's schema as response_format.
    supports_response_schema = LlamaCppEngine.supports_response_schema
    supports_function_calling = LlamaCppEngine.supports_function_calling
    supports_reasoning = LlamaCppEngine.supports_reasoning
    supported_params = LlamaCppEngine.supported_params

    def __init__(self, replies: dict[str, dict]):
        self.replies = replies
        self.requests: list[tuple[str, Request]] = []

    def complete(self, request: Request) -> Response:
        messages = [{"role": "system", "content": request.system}] if request.system is not None else []
        messages += [{"role": m.role, "content": m.text} for m in request.messages]
        name = module_of(messages)
        self.requests.append((name, request))
        return Response(
            id=None,
            model=request.model,
            message=Message.assistant(json.dumps(self.replies[name])),
            finish_reason="stop",
            usage=Usage(input_tokens=0, output_tokens=0),
        )


def request_text(index: int, name: str, request: Request) -> str:
    config = request.config
    settings = {
        k: getattr(config, k)
        for k in ("max_tokens", "temperature", "top_p", "seed", "logprobs")
        if getattr(config, k) is not None
    }
    if config.stop:
        settings["stop"] = list(config.stop)
    messages = [{"role": "system", "content": request.system}] if request.system is not None else []
    messages += [{"role": m.role, "content": m.text} for m in request.messages]
    return (
        f"===== request {index}: {name} =====\n"
        f"{json.dumps(settings)}\n\n"
        f"{messages_text(messages)}\n"
        f"--- response_format ---\n{json.dumps(config.response_format, indent=1)}\n"
    )


REPLIES = {
    "write": {"backstory": BACKSTORY},
    # The views disagree, so ValueSim's coordinator runs.
    "cognitive": {"analysis": "You hold that family comes first.", "answer": "1"},
    "affective": {"analysis": "You feel close to your brothers but far from your parents.", "answer": "2"},
    "behavioral": {"analysis": "You visit your family every week.", "answer": "1"},
    "coordinator": {"answer": "1"},
    "from_backstory": {"answer": "1"},
    "from_profile": {"answer": "2"},
    "from_demographics": {"answer": "1"},
}


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A deterministic embedder for rag (hashed word counts): which statements it retrieves is fixed by the text."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().replace(".", " ").replace("?", " ").split():
            out[i, zlib.crc32(word.encode()) % 64] += 1.0
    return out


@pytest.fixture(scope="module")
def synthetic_catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    """The synthetic WVS-7 catalog (never the real one: the rendered statements end up in committed files)."""
    folder = tmp_path_factory.mktemp("synthetic_metadata")
    write_metadata(folder, ["JPN", "USA"], seed=0)
    return Catalog.from_wvs(folder)


def person_example(catalog: Catalog) -> dspy.Example:
    """A person in Japan with three demographic and six earlier answers (each the first option, age 34), asked
    Q49 (a 10-point scale)."""

    def answered(codes: list[str]) -> list[dict]:
        return [{"q": q, "a": 34 if catalog[q].open else min(catalog[q].options)} for q in codes]

    person = make_person(
        catalog, "JPN", answered(["Q260", "Q262", "Q275"]), answered(["Q1", "Q6", "Q27", "Q57", "Q164", "Q171"])
    )
    person["person_id"] = "JPN-0001"
    return make_example(catalog, person, "Q49", gold=1)


LM_PROGRAMS = {
    "valuesim": {},
    "backstory": {},
    "full-info": {},
    "demographics": {},
    "rag": {"embedder": bag_of_words},
}


@pytest.mark.parametrize("name", list(LM_PROGRAMS))
def test_program_requests(name: str, synthetic_catalog: Catalog) -> None:
    engine = RecordingEngine(REPLIES)
    lm = dspy.LM("llamacpp/snapshot", engine=engine, temperature=0.0, max_tokens=512, cache=False)
    program = PROGRAMS[name].from_benchmark(None, **LM_PROGRAMS[name])
    example = person_example(synthetic_catalog)
    with dspy.context(lm=lm, adapter=OptionsAdapter()):
        program(**example.inputs())
    assert engine.requests, "the program sent no request"
    text = "\n".join(request_text(i, n, r) for i, (n, r) in enumerate(engine.requests, start=1))
    check_snapshot(f"programs/{name}.txt", text)


def test_served_model_schema_follows_each_questions_options() -> None:
    """A model LiteLLM does not know, on a server (`openai/<name> --api-base`): JSON mode with the answer's schema.
    The schema is cached per (signature, options); each call still gets its own options and its own dict."""
    lm = dspy.LM("openai/served-model", api_base="http://127.0.0.1:9/v1", max_tokens=200)
    signature = SIGNATURES["cognitive"]

    def response_format(options: dict[str, str]) -> dict:
        kwargs: dict = {}
        OptionsAdapter()._prepare_response_format(lm, kwargs, with_options(signature, options))
        return kwargs["response_format"]

    first = response_format(OPTIONS)
    assert first["type"] == "json_object"
    assert first["schema"]["properties"]["answer"]["enum"] == list(OPTIONS)
    first["schema"]["properties"]["answer"]["enum"].append("99")  # a caller changing its copy changes no other call
    assert response_format(OPTIONS)["schema"]["properties"]["answer"]["enum"] == list(OPTIONS)
    assert response_format({"1": "Yes", "2": "No"})["schema"]["properties"]["answer"]["enum"] == ["1", "2"]
    assert with_options(signature, OPTIONS) is with_options(signature, dict(OPTIONS))
