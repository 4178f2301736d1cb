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
    else:  # MIPROv2 asks no permission in DSPy 3.4 (requires_permission_to_run=False only logs a deprecation)
        compiled = opt.compile(program, trainset=trainset, valset=valset)
    return drop_long_demos(compiled, max_demo_chars)


def drop_long_demos(program: dspy.Module, max_chars: int) -> dspy.Module:
    """Keep only demos whose signature fields fit `max_chars` of text: a demo carrying a whole profile would
    double a full-profile prompt and overflow a small model's context window (a 232-answer profile is about
    5,000 tokens), so such predictors keep their instruction and lose their demos."""
    for _, predictor in program.named_predictors():
        fields = list(predictor.signature.fields)
        predictor.demos = [d for d in predictor.demos if len(str([d.get(f) for f in fields])) <= max_chars]
    return program
