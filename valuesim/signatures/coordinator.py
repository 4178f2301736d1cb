import dspy


class Coordinate(dspy.Signature):
    """Three views of the same person disagree on how they would answer a survey question. Weigh the cognitive
    (beliefs, reasoning), affective (feelings, values) and behavioral (habits, circumstances) analyses against
    the backstory and decide the single answer this person would actually give. Prefer the view whose
    evidence in the backstory is most direct for this question."""

    backstory: str = dspy.InputField(desc="the person's life story, in the second person")
    question: str = dspy.InputField()
    options: dict[str, str] = dspy.InputField(desc="answer code -> answer label")
    cognitive_answer: str = dspy.InputField(desc="the option code the cognitive view chose")
    cognitive_analysis: str = dspy.InputField(desc="the cognitive view's reasoning")
    affective_answer: str = dspy.InputField(desc="the option code the affective view chose")
    affective_analysis: str = dspy.InputField(desc="the affective view's reasoning")
    behavioral_answer: str = dspy.InputField(desc="the option code the behavioral view chose")
    behavioral_analysis: str = dspy.InputField(desc="the behavioral view's reasoning")
    answer: str = dspy.OutputField(desc="the code of the option this person would choose")
