"""Direct-answer signatures for the LM baselines."""

import dspy


class AnswerFromBackstory(dspy.Signature):
    """You are the person in the backstory. Answer the survey question as you would, choosing one option."""

    backstory: str = dspy.InputField(desc="the person's life story, in the second person")
    question: str = dspy.InputField()
    options: dict[str, str] = dspy.InputField(desc="answer code -> answer label")
    answer: str = dspy.OutputField(desc="the code of the option this person would choose")


class AnswerFromProfile(dspy.Signature):
    """You are the person described by these facts and earlier survey answers. Answer the new survey question as
    you would, consistently with your earlier answers on related topics, choosing one option."""

    demographics: list[str] = dspy.InputField(desc="who the person is")
    profile: list[str] = dspy.InputField(desc="the person's answers to earlier survey questions")
    question: str = dspy.InputField()
    options: dict[str, str] = dspy.InputField(desc="answer code -> answer label")
    answer: str = dspy.OutputField(desc="the code of the option this person would choose")


class AnswerFromDemographics(dspy.Signature):
    """You are the person described by these facts. Answer the survey question as someone with your background
    typically would, choosing one option."""

    demographics: list[str] = dspy.InputField(desc="who the person is")
    question: str = dspy.InputField()
    options: dict[str, str] = dspy.InputField(desc="answer code -> answer label")
    answer: str = dspy.OutputField(desc="the code of the option this person would choose")
