"""Compile a program with one of DSPy's optimizers against training respondents."""

from __future__ import annotations

import dspy

from valuesim.errors import ValueSimError
from valuesim.optimize.metric import answer_metric, feedback_metric

OPTIMIZERS = ("bootstrap", "random-search", "mipro", "gepa")


def make_optimizer(
    name: str,
    seed: int = 0,
    threads: int = 1,
    demos: int = 2,
    candidates: int = 4,
    proposer_lm: dspy.LM | None = None,
) -> dspy.teleprompt.Teleprompter:
    """The DSPy optimizer for a CLI name, sized for small compiles (scale up with demos/candidates).

    `proposer_lm` writes new instructions (MIPROv2's prompt model, GEPA's reflection LM); by default the task LM.
    A stronger proposer than the simulated person's model is the usual choice."""
    if name == "bootstrap":
        return dspy.BootstrapFewShot(
            metric=answer_metric, max_bootstrapped_demos=demos, max_labeled_demos=demos, max_rounds=1
        )
    if name == "random-search":
        return dspy.BootstrapFewShotWithRandomSearch(
            metric=answer_metric,
            max_bootstrapped_demos=demos,
            max_labeled_demos=demos,
            num_candidate_programs=candidates,
            num_threads=threads,
        )
    if name == "mipro":
        return dspy.MIPROv2(
            metric=answer_metric,
            auto="light",
            max_bootstrapped_demos=demos,
            max_labeled_demos=demos,
            num_threads=threads,
            seed=seed,
            prompt_model=proposer_lm,
        )
    if name == "gepa":
        return dspy.GEPA(
            metric=feedback_metric,
            auto="light",
            reflection_lm=proposer_lm or dspy.settings.lm,
            num_threads=threads,
            seed=seed,
        )
    raise ValueSimError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")


def compile_program(
    program: dspy.Module,
    optimizer: str,
    trainset: list[dspy.Example],
    valset: list[dspy.Example] | None = None,
    seed: int = 0,
    threads: int = 1,
    max_demo_chars: int = 4000,
    proposer_lm: dspy.LM | None = None,
) -> dspy.Module:
    opt = make_optimizer(optimizer, seed=seed, threads=threads, proposer_lm=proposer_lm)
    if optimizer == "bootstrap":
        compiled = opt.compile(program, trainset=trainset)
    elif optimizer == "mipro":
        compiled = opt.compile(program, trainset=trainset, valset=valset, requires_permission_to_run=False)
    else:
        compiled = opt.compile(program, trainset=trainset, valset=valset)
    return drop_long_demos(fit_labeled_demos(compiled), max_demo_chars)


def fit_labeled_demos(program: dspy.Module) -> dspy.Module:
    """Rewrite labeled demos (raw training examples) into the predictor's fields.

    A training example's `question` is the question code ("Q46") and its text is `question_text`, while every
    signature's `question` is the text the program passes in. Left as they are, labeled demos would show the model
    "question: Q46" (and carry person_id, known, ... into the saved program). Bootstrapped demos (`augmented`)
    come from the program's own trace and already hold the signature's fields. A labeled demo without any of the
    predictor's outputs (the backstory writer's: training examples have no backstory) teaches nothing and goes."""
    for _, predictor in program.named_predictors():
        fields = predictor.signature.fields
        fitted = []
        for demo in predictor.demos:
            if not demo.get("augmented") and "question_text" in demo:
                values = {k: demo[k] for k in fields if k in demo} | {"question": demo["question_text"]}
                if not any(k in values for k in predictor.signature.output_fields):
                    continue
                demo = dspy.Example(**{k: values[k] for k in fields if k in values})
            fitted.append(demo)
        predictor.demos = fitted
    return program


def drop_long_demos(program: dspy.Module, max_chars: int) -> dspy.Module:
    """Keep only demos whose signature fields fit `max_chars` of text: a demo carrying a whole profile would
    double a full-profile prompt and overflow a small model's context window (a 232-answer profile is about
    5,000 tokens), so such predictors keep their instruction and lose their demos."""
    for _, predictor in program.named_predictors():
        fields = list(predictor.signature.fields)
        predictor.demos = [d for d in predictor.demos if len(str([d.get(f) for f in fields])) <= max_chars]
    return program
