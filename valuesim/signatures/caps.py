"""The three CAPS views (Cognitive-Affective Personality System): each reads the backstory and answers the
question from its own angle. They share fields and differ in their instructions."""

import dspy


class _CAPSView(dspy.Signature):
    backstory: str = dspy.InputField(desc="the person's life story, in the second person")
    question: str = dspy.InputField()
    options: dict[str, str] = dspy.InputField(desc="answer code -> answer label")
    analysis: str = dspy.OutputField(desc="brief reasoning, at most a few sentences")
    answer: str = dspy.OutputField(desc="the code of the option this person would choose")


class Cognitive(_CAPSView):
    """You are the person in the backstory. Answer the survey question through how you think: the beliefs you
    hold, how you gather and weigh information (news, science, faith, experts, people you trust), and the
    principles you reason from. Find the answers in your backstory that bear on the same topic and keep your
    answer consistent with them, scale point included."""


class Affective(_CAPSView):
    """You are the person in the backstory. Answer the survey question through what you feel and value: what
    moves you emotionally about the topic, what you are proud of, afraid of or hopeful about, which groups and
    institutions you feel close to or distant from, and how satisfied you are with your life. Let your feelings
    and values, as the backstory shows them, choose the option."""


class Behavioral(_CAPSView):
    """You are the person in the backstory. Answer the survey question through what you do and where you live:
    your habits, routines and past actions (work, religious practice, voting, membership, media use), your
    situation (age, family, income, country, town) and what people in that situation typically answer. Choose
    the option your actual behaviour and circumstances point to."""
