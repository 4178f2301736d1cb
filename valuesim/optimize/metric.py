"""DSPy metrics for compiling: exact option match, with partial credit for ordinal closeness.

While an optimizer bootstraps demos (`trace is not None`) only an exact match counts, so no demo teaches a wrong
answer. When it scores candidate programs (random search, MIPRO) an ordinal near-miss earns partial credit,
half of its closeness on the scale: scoring 0/1 on 4- to 10-point scales makes most candidates tie, and the
partial credit separates a program that lands next to the answer from one that lands at the other end. GEPA
also gets textual feedback: the gold answer and what each module said.
"""

from __future__ import annotations

import dspy


def closeness(example: dspy.Example, answer: object) -> float:
    """1 for the gold option, 0 for the far end of an ordinal scale (or any other option of a nominal one)."""
    codes = list(example.options)
    answer = None if answer is None else str(answer)
    if answer not in codes:
        return 0.0
    if answer == example.answer:
        return 1.0
    if not example.ordinal or len(codes) < 2:
        return 0.0
    return 1 - abs(codes.index(answer) - codes.index(example.answer)) / (len(codes) - 1)


def answer_metric(example: dspy.Example, pred: dspy.Prediction, trace: object = None) -> float | bool:
    answer = getattr(pred, "answer", None)
    exact = answer is not None and str(answer) == example.answer
    if trace is not None:
        return exact
    return 1.0 if exact else 0.5 * closeness(example, answer)


def feedback_metric(
    example: dspy.Example,
    pred: dspy.Prediction,
    trace: object = None,
    pred_name: str | None = None,
    pred_trace: object = None,
) -> dspy.Prediction:
    """GEPA's metric: the score plus what went wrong, in words a reflection LM can act on."""
    score = answer_metric(example, pred)
    gold = f"{example.answer} ({example.options.get(example.answer, '?')})"
    answer = getattr(pred, "answer", None)
    said = [f"final answer {answer} ({example.options.get(str(answer), 'not an option')})"]
    for view in ("cognitive", "affective", "behavioral"):
        if hasattr(pred, f"{view}_answer"):
            analysis = getattr(pred, f"{view}_analysis", "")
            said.append(f"{view} view answered {getattr(pred, f'{view}_answer')}: {analysis}")
    verdict = "correct" if score == 1.0 else f"wrong; the person actually answered {gold}"
    feedback = f"Question {example.question_code}: {example.question}\n{verdict}.\n" + "\n".join(said)
    return dspy.Prediction(score=float(score), feedback=feedback)
