"""DSPy signatures: the instruction is the docstring, the fields say what goes in and out.

Shared context (the person) comes before the question in every signature so that an engine with a prefix
cache re-reads only the question part across a person's questions.
"""

from valuesim.signatures.answer import AnswerFromBackstory, AnswerFromDemographics, AnswerFromProfile
from valuesim.signatures.backstory import WriteBackstory
from valuesim.signatures.caps import Affective, Behavioral, Cognitive
from valuesim.signatures.coordinator import Coordinate

__all__ = [
    "WriteBackstory",
    "Cognitive",
    "Affective",
    "Behavioral",
    "Coordinate",
    "AnswerFromBackstory",
    "AnswerFromProfile",
    "AnswerFromDemographics",
]
