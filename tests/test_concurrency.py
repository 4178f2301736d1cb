"""`--threads N` keeps N LM calls in flight, and a person's backstory is written once without holding up the other
persons. The LM is a DSPy engine that holds every call until `gate` calls are in flight at once, so the tests
count concurrent calls instead of timing anything: a harness that never reaches `gate` calls at once leaves them
waiting until the deadlock guard fails them."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import dspy
import pytest
from dspy.lm15 import Request, Response
from helpers import make_ex, use

from valuesim.lm.dummy import AsyncFirstOptionEngine, FirstOptionEngine
from valuesim.programs import PROGRAMS
from valuesim.run.predict import PersonQueue, evaluate
from valuesim.run.store import RunStore

DEADLOCK_GUARD = 60.0  # seconds a held call waits before failing: only reached when the harness is broken


class GatedEngine(FirstOptionEngine):
    """Answers like `--lm dummy`, but only once `gate` calls have been in flight at the same time."""

    def __init__(self, gate: int) -> None:
        super().__init__()
        self.gate = gate
        self.lock = threading.Lock()
        self.open = threading.Event()
        self.in_flight: list[str] = []  # kinds of the calls now running ("backstory:<person>" or "answer")
        self.max_in_flight = 0
        self.at_opening: list[str] = []  # the calls that were in flight when the gate opened
        self.backstories: list[str] = []  # person of every backstory call

    def complete(self, request: Request) -> Response:
        kind = self.kind(request)
        with self.lock:
            self.in_flight.append(kind)
            self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
            if len(self.in_flight) >= self.gate and not self.open.is_set():
                self.at_opening = list(self.in_flight)
                self.open.set()
        try:
            if not self.open.wait(DEADLOCK_GUARD):
                raise TimeoutError(f"only {self.max_in_flight} calls were ever in flight at once, not {self.gate}")
            return super().complete(request)
        finally:
            with self.lock:
                self.in_flight.remove(kind)

    def kind(self, request: Request) -> str:
        schema = (request.config.response_format or {}).get("schema") or {}
        if "backstory" not in schema.get("properties", {}):
            return "answer"
        person = re.search(r"PERSON-\d+", str(request.messages)).group()  # the profile line examples() writes
        with self.lock:
            self.backstories.append(person)
        return f"backstory:{person}"


def gated_lm(gate: int) -> tuple[dspy.LM, GatedEngine]:
    engine = GatedEngine(gate)
    lm = dspy.LM("dummy", engine=engine, async_engine=AsyncFirstOptionEngine(engine), cache=False)
    return use(lm), engine


def examples(persons: int, questions: int) -> list[dspy.Example]:
    """Person-major, as Benchmark.examples orders them; each person's own profile (their own backstory key)."""
    return [
        make_ex(f"Q{q + 1}", "1", person_id=f"p{p}", profile=[f"You are PERSON-{p}."])
        for p in range(persons)
        for q in range(questions)
    ]


def test_threads_keep_n_calls_in_flight(catalog, tmp_path: Path) -> None:
    _, engine = gated_lm(gate=8)
    result = evaluate(PROGRAMS["demographics"](), examples(16, 3), tmp_path, threads=8, progress=False,
                      resamples=0)  # fmt: skip
    assert engine.max_in_flight == 8  # reached, and never more than --threads
    assert result.metrics["n"] == 48 and result.metrics["failed"] == 0 and engine.calls == 48


def test_one_backstory_per_person_and_persons_do_not_wait_for_each_other(catalog, tmp_path: Path) -> None:
    """4 persons x 3 questions on 4 threads: the gate opens only when 4 calls run at once, and those are the 4
    persons' backstories; no backstory is written twice (handing a person's 3 questions to 3 threads at once
    used to write it 3 times)."""
    _, engine = gated_lm(gate=4)
    result = evaluate(PROGRAMS["valuesim"](), examples(4, 3), tmp_path, threads=4, progress=False,
                      resamples=0)  # fmt: skip
    assert result.metrics["n"] == 12 and result.metrics["failed"] == 0
    assert sorted(engine.at_opening) == [f"backstory:PERSON-{p}" for p in range(4)]
    assert sorted(engine.backstories) == [f"PERSON-{p}" for p in range(4)]
    assert engine.max_in_flight == 4
    stored = RunStore(tmp_path).frame()
    stories = {row.person_id: json.loads(row.detail)["backstory"] for row in stored.itertuples()}
    assert len(stored) == 12 and len(stories) == 4


def test_person_queue_hands_out_every_item_once_first_items_first() -> None:
    todo = examples(3, 3)
    queue = PersonQueue(todo)
    firsts = [queue.next(), queue.next(), queue.next()]
    assert [ex.person_id for ex in firsts] == ["p0", "p1", "p2"]
    assert queue.next() is None  # every other item waits for its person's first item
    queue.done(firsts[1])
    rest = [queue.next(), queue.next()]
    assert [ex.person_id for ex in rest] == ["p1", "p1"] and queue.next() is None
    queue.done(rest[0])  # a later item finishing releases nothing new
    assert queue.next() is None
    queue.done(firsts[0])
    queue.done(firsts[2])
    rest += [queue.next() for _ in range(4)]
    assert queue.next() is None
    handed = [*firsts, *rest]
    assert sorted((ex.person_id, ex.question_code) for ex in handed) == sorted(
        (ex.person_id, ex.question_code) for ex in todo
    )


@pytest.mark.parametrize("threads", [1, 3])
def test_fewer_persons_than_threads_still_finish(catalog, tmp_path: Path, threads: int) -> None:
    """One person, several threads: the first item runs alone, then the rest together (no deadlock, no loss)."""
    _, engine = gated_lm(gate=1)
    result = evaluate(PROGRAMS["valuesim"](), examples(1, 4), tmp_path, threads=threads, progress=False,
                      resamples=0)  # fmt: skip
    assert result.metrics["n"] == 4 and result.metrics["failed"] == 0
    assert engine.backstories == ["PERSON-0"] and engine.max_in_flight <= threads
