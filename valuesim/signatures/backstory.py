import dspy


class WriteBackstory(dspy.Signature):
    """Write the life story of the person described by these facts, in the second person ("You grew up ...").

    Weave every fact into the story: each answer, demographic detail and opinion must be recoverable from it,
    with the same strength (a "very important" stays very important, a 3 on a 10-point scale stays moderate).
    Group related facts (family, work, faith, politics, trust, security) into flowing paragraphs, and do not
    invent opinions the facts do not state. Stay within the word budget."""

    demographics: list[str] = dspy.InputField(desc="who the person is")
    profile: list[str] = dspy.InputField(desc="the person's answers to earlier survey questions")
    word_budget: int = dspy.InputField(desc="maximum length of the backstory in words")
    backstory: str = dspy.OutputField()
