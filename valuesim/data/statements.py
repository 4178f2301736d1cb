"""Answers as second-person statements, as in the ValueSim profiles ("Family is very important in your life.").

Each question is covered by exactly one kind of table:

- `GROUPS`: blocks of questions that share one sentence form (importance, trust, confidence, agree/disagree, ...).
  A `Form` maps each option label to a sentence with slots, and each question to the words for those slots.
- `SENTENCES` / `TEMPLATES`: per-question tables where the group form reads badly - a full sentence per answer
  code, or a sentence around the (cleaned, reworded where needed) option label.
- `SPECIAL`: free numbers (year of birth, age) and the long name lists (countries, languages, parties,
  ethnic groups), which need their own cleaning.

Option labels come from the codebook and carry artefacts ("Eight step", "(for example: ...", "NIRL: ",
truncated party names); they are cleaned here, never in the catalog, so the codes stay those of the data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from valuesim.data.catalog import Question

YEAR_RANGE = range(1850, 2101)  # Q261: plausible years of birth
AGE_RANGE = range(0, 131)  # Q262: plausible ages


def _norm(label: str) -> str:
    """Lookup key for an option label: the codebook spells the same answer in several ways."""
    return re.sub(r"\s+", " ", label.replace("’", "'").replace("´", "'")).strip().lower()


def _lower_first(text: str) -> str:
    """Lower-case an option label's first letter ("A stable economy"), keeping acronyms and names ("TV news")."""
    first = text.split()[0]
    if first in {"A", "An"} or (first[1:].islower() and first != "God"):
        return text[0].lower() + text[1:]
    return text


def _article(phrase: str) -> str:
    """The indefinite article by sound ("a Ukrainian", "an Uzbek"), for ethnic-group phrases."""
    if re.match(r"(?i)(uk|uy|ui|uni|eu|one)", phrase):
        return "a"
    return "an" if phrase[:1].lower() in "aeiou" else "a"


NUMBER_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}


# ---------------------------------------------------------------------------------------------------------------
# Group templates
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Form:
    """One sentence form shared by a block of questions.

    `answers` maps a normalized option label to a sentence with {slots}; the key "#" stands for every point of a
    numeric scale (its value has {n}). `items` gives each question's words for the slots: a string fills {x}.
    """

    answers: dict[str, str]
    items: dict[str, str | dict[str, str]]

    def render(self, code: str, answer: int, label: str) -> str:
        template = self.answers.get(_norm(label)) or self.answers.get("#")
        if template is None:  # an option label this form does not know: the table needs a line
            raise KeyError(f"{code}: no sentence for the option {label!r}")
        slots = self.items[code]
        fields = {"x": slots} if isinstance(slots, str) else slots
        return template.format(n=answer, **fields)


def _scale(low: str, high: str, rating: str = "you place yourself at") -> dict[str, str]:
    """Slots for a 1-10 scale whose middle points are bare digits: the end labels say what the numbers mean."""
    return {"low": low, "high": high, "rating": rating}


SCALE = "On a scale from 1 ({low}) to 10 ({high}), {rating} {n}."

AGREE = {
    "agree strongly": "You strongly agree that {x}.",
    "strongly agree": "You strongly agree that {x}.",
    "agree": "You agree that {x}.",
    "neither agree nor disagree": "You neither agree nor disagree that {x}.",
    "neither agree or disagree": "You neither agree nor disagree that {x}.",
    "disagree": "You disagree that {x}.",
    "strongly disagree": "You strongly disagree that {x}.",
    "disagree strongly": "You strongly disagree that {x}.",
    "hard to say": "You find it hard to say whether {x}.",
}

# The organizations of Q94-Q105 in the codebook's order (questions.json lists them in another order).
MEMBERSHIP = {
    "Q94": "a church or religious organization",
    "Q95": "a sport or recreational organization",
    "Q96": "an art, music or educational organization",
    "Q97": "a labor union",
    "Q98": "a political party",
    "Q99": "an environmental organization",
    "Q100": "a professional association",
    "Q101": "a humanitarian or charitable organization",
    "Q102": "a consumer organization",
    "Q103": "a self-help group or mutual aid group",
    "Q104": "a women's group",
    "Q105": "any other organization",
}

GROUPS: list[Form] = [
    # Q1-Q6 importance in life; the slot carries the verb so "Friends are" agrees.
    Form(
        answers={
            "very important": "{x} very important in your life.",
            "rather important": "{x} rather important in your life.",
            "not very important": "{x} not very important in your life.",
            "not at all important": "{x} not at all important in your life.",
        },
        items={
            "Q1": "Family is",
            "Q2": "Friends are",
            "Q3": "Leisure time is",
            "Q4": "Politics is",
            "Q5": "Work is",
            "Q6": "Religion is",
        },
    ),
    # Q7-Q17 child qualities: respondents pick up to five, so "Not mentioned" is not a rejection.
    Form(
        answers={
            "important": "You consider {x} an important quality for children to learn.",
            "mentioned": "You consider {x} an important quality for children to learn.",
            "not mentioned": "You do not name {x} as an especially important quality for children to learn.",
        },
        items={
            "Q7": "good manners",
            "Q8": "independence",
            "Q9": "hard work",
            "Q10": "a feeling of responsibility",
            "Q11": "imagination",
            "Q12": "tolerance and respect for other people",
            "Q13": "thrift (saving money and things)",
            "Q14": "determination and perseverance",
            "Q15": "religious faith",
            "Q16": "unselfishness",
            "Q17": "obedience",
        },
    ),
    # Q18-Q26 neighbours: "Mentioned" means the person would NOT like them as neighbours.
    Form(
        answers={
            "mentioned": "You would not like to have {x} as neighbors.",
            "not mentioned": "You would not mind having {x} as neighbors.",
        },
        items={
            "Q18": "drug addicts",
            "Q19": "people of a different race",
            "Q20": "people who have AIDS",
            "Q21": "immigrants or foreign workers",
            "Q22": "homosexuals",
            "Q23": "people of a different religion",
            "Q24": "heavy drinkers",
            "Q25": "unmarried couples living together",
            "Q26": "people who speak a different language",
        },
    ),
    # Agree/disagree statements, paraphrased into the second person.
    Form(
        answers=AGREE,
        items={
            "Q27": "one of your main goals in life has been to make your parents proud",
            "Q28": "when a mother works for pay, the children suffer",
            "Q29": "on the whole, men make better political leaders than women do",
            "Q30": "a university education is more important for a boy than for a girl",
            "Q31": "on the whole, men make better business executives than women do",
            "Q32": "being a housewife is just as fulfilling as working for pay",
            "Q33": "when jobs are scarce, men should have more right to a job than women",
            "Q34": "when jobs are scarce, employers should give priority to people of your country over immigrants",
            "Q35": "if a woman earns more money than her husband, it is almost certain to cause problems",
            "Q36": "homosexual couples are as good parents as other couples",
            "Q37": "it is a duty towards society to have children",
            "Q38": "adult children have the duty to provide long-term care for their parents",
            "Q39": "people who don't work turn lazy",
            "Q40": "work is a duty towards society",
            "Q41": "work should always come first, even if it means less spare time",
            "Q119": "on the whole, women are less corrupt than men",
            "Q122": "immigration fills important job vacancies in your country",
            "Q123": "immigration strengthens cultural diversity in your country",
            "Q124": "immigration increases the crime rate in your country",
            "Q125": "immigration gives asylum to political refugees who are persecuted elsewhere",
            "Q126": "immigration increases the risks of terrorism in your country",
            "Q127": "immigration offers people from poor countries a better living",
            "Q128": "immigration increases unemployment in your country",
            "Q129": "immigration leads to social conflict in your country",
            "Q169": "whenever science and religion conflict, religion is always right",
            "Q170": "the only acceptable religion is your religion",
        },
    ),
    # Q43-Q45 possible future changes.
    Form(
        answers={
            "good thing": "You think it would be a good thing if {x}.",
            "don't mind": "You would not mind if {x}.",
            "bad thing": "You think it would be a bad thing if {x}.",
        },
        items={
            "Q43": "less importance were placed on work in people's lives",
            "Q44": "there were more emphasis on the development of technology",
            "Q45": "there were greater respect for authority",
        },
    ),
    # Q51-Q55 deprivation in the last 12 months.
    Form(
        answers={
            "often": "In the last 12 months, you or your family have often {x}.",
            "sometimes": "In the last 12 months, you or your family have sometimes {x}.",
            "rarely": "In the last 12 months, you or your family have rarely {x}.",
            "never": "In the last 12 months, you or your family have never {x}.",
        },
        items={
            "Q51": "gone without enough food to eat",
            "Q52": "felt unsafe from crime in your home",
            "Q53": "gone without medicine or medical treatment that you needed",
            "Q54": "gone without a cash income",
            "Q55": "gone without a safe shelter over your head",
        },
    ),
    # Q58-Q63 trust in groups of people.
    Form(
        answers={
            "trust completely": "You trust {x} completely.",
            "trust somewhat": "You trust {x} somewhat.",
            "do not trust very much": "You do not trust {x} very much.",
            "do not trust at all": "You do not trust {x} at all.",
        },
        items={
            "Q58": "your family",
            "Q59": "the people in your neighborhood",
            "Q60": "people you know personally",
            "Q61": "people you meet for the first time",
            "Q62": "people of another religion",
            "Q63": "people of another nationality",
        },
    ),
    # Q64-Q89 confidence in institutions.
    Form(
        answers={
            "a great deal": "You have a great deal of confidence in {x}.",
            "quite a lot": "You have quite a lot of confidence in {x}.",
            "not very much": "You do not have very much confidence in {x}.",
            "none at all": "You have no confidence at all in {x}.",
        },
        items={
            "Q64": "the churches",
            "Q65": "the armed forces",
            "Q66": "the press",
            "Q67": "television",
            "Q68": "labor unions",
            "Q69": "the police",
            "Q70": "the courts",
            "Q71": "the government",
            "Q72": "political parties",
            "Q73": "parliament",
            "Q74": "the civil service",
            "Q75": "universities",
            "Q76": "elections",
            "Q77": "major companies",
            "Q78": "banks",
            "Q79": "environmental organizations",
            "Q80": "women's organizations",
            "Q81": "charitable or humanitarian organizations",
            "Q82": "your major regional organization (such as the European Union)",
            "Q83": "the United Nations",
            "Q84": "the International Monetary Fund (IMF)",
            "Q85": "the International Criminal Court (ICC)",
            "Q86": "the North Atlantic Treaty Organization (NATO)",
            "Q87": "the World Bank",
            "Q88": "the World Health Organization (WHO)",
            "Q89": "the World Trade Organization (WTO)",
        },
    ),
    # Q94-Q104 membership (Q105, "any other organization", reads better with its own sentences).
    Form(
        answers={
            "don't belong": "You are not a member of {x}.",
            "not a member": "You are not a member of {x}.",
            "inactive member": "You are an inactive member of {x}.",
            "active member": "You are an active member of {x}.",
        },
        items={code: org for code, org in MEMBERSHIP.items() if code != "Q105"},
    ),
    # Q113-Q117 how many people in a group are involved in corruption.
    Form(
        answers={
            "none of them": "You believe that no {x} are involved in corruption.",
            "few of them": "You believe that few {x} are involved in corruption.",
            "most of them": "You believe that most {x} are involved in corruption.",
            "all of them": "You believe that all {x} are involved in corruption.",
        },
        items={
            "Q113": "state authorities",
            "Q114": "business executives",
            "Q115": "local authorities",
            "Q116": "civil service providers",
            "Q117": "journalists and media people",
        },
    ),
    # Q132-Q138 how frequent things are in the neighbourhood; the slot carries the verb for agreement.
    Form(
        answers={
            "very frequently": "{x} very frequent in your neighborhood.",
            "quite frequently": "{x} quite frequent in your neighborhood.",
            "not frequently": "{x} not frequent in your neighborhood.",
            "not at all frequently": "{x} not at all frequent in your neighborhood.",
        },
        items={
            "Q132": "Robberies are",
            "Q133": "Alcohol consumption in the streets is",
            "Q134": "Police or military interference in people's private lives is",
            "Q135": "Racist behavior is",
            "Q136": "Drug sales in the streets are",
            "Q137": "Street violence and fights are",
            "Q138": "Sexual harassment is",
        },
    ),
    # Q139-Q141 things done for reasons of security.
    Form(
        answers={
            "yes": "For reasons of security, you have {x}.",
            "no": "You have not {x} for reasons of security.",
        },
        items={
            "Q139": "avoided carrying much money",
            "Q140": "avoided going out at night",
            "Q141": "carried a knife, gun or other weapon",
        },
    ),
    # Q142-Q148 worries. The codebook's "A great deal" is the questionnaire's second point "A good deal".
    Form(
        answers={
            "very much": "You worry very much about {x}.",
            "a great deal": "You worry a good deal about {x}.",
            "not much": "You do not worry much about {x}.",
            "not at all": "You do not worry at all about {x}.",
        },
        items={
            "Q142": "losing your job or not finding a job",
            "Q143": "not being able to give your children a good education",
            "Q146": "a war involving your country",
            "Q147": "a terrorist attack",
            "Q148": "a civil war",
        },
    ),
    # Q165-Q168 religious beliefs.
    Form(
        answers={"yes": "You believe in {x}.", "no": "You do not believe in {x}."},
        items={"Q165": "God", "Q166": "life after death", "Q167": "hell", "Q168": "heaven"},
    ),
    # Q158-Q162 science statements on a 1-10 agreement scale (quoted: the statements are long clauses).
    Form(
        answers={
            "#": "On a scale from 1 (completely disagree) to 10 (completely agree),"
            ' you rate the statement "{x}" at {n}.'
        },
        items={
            "Q158": "science and technology are making our lives healthier, easier, and more comfortable",
            "Q159": "because of science and technology, there will be more opportunities for the next generation",
            "Q160": "we depend too much on science and not enough on faith",
            "Q161": "one of the bad effects of science is that it breaks down people's ideas of right and wrong",
            "Q162": "it is not important for you to know about science in your daily life",
        },
    ),
    # Q177-Q195 justifiability, 1-10.
    Form(
        answers={"#": "On a scale from 1 (never justifiable) to 10 (always justifiable), you rate {x} at {n}."},
        items={
            "Q177": "claiming government benefits to which you are not entitled",
            "Q178": "avoiding a fare on public transport",
            "Q179": "stealing property",
            "Q180": "cheating on taxes if you have a chance",
            "Q181": "someone accepting a bribe in the course of their duties",
            "Q182": "homosexuality",
            "Q183": "prostitution",
            "Q184": "abortion",
            "Q185": "divorce",
            "Q186": "sex before marriage",
            "Q187": "suicide",
            "Q188": "euthanasia",
            "Q189": "a man beating his wife",
            "Q190": "parents beating children",
            "Q191": "violence against other people",
            "Q192": "terrorism as a political, ideological or religious means",
            "Q193": "having casual sex",
            "Q194": "political violence",
            "Q195": "the death penalty",
        },
    ),
    # Q196-Q198 government rights.
    Form(
        answers={
            "definitely should have the right": "You think the government definitely should have the right to {x}.",
            "probably should have the right": "You think the government probably should have the right to {x}.",
            "probably should not have the right": "You think the government probably should not have the right to {x}.",
            "definitely should not have the right": "You think the government definitely should not have the right"
            " to {x}.",
        },
        items={
            "Q196": "keep people under video surveillance in public areas",
            "Q197": "monitor all e-mails and any other information exchanged on the Internet",
            "Q198": "collect information about anyone living in your country without their knowledge",
        },
    ),
    # Q201-Q208 information sources.
    Form(
        answers={
            "daily": "You get information from {x} every day.",
            "weekly": "You get information from {x} every week.",
            "monthly": "You get information from {x} every month.",
            "less than monthly": "You get information from {x} less than once a month.",
            "never": "You never get information from {x}.",
        },
        items={
            "Q201": "a daily newspaper",
            "Q202": "TV news",
            "Q203": "radio news",
            "Q204": "your mobile phone",
            "Q205": "email",
            "Q206": "the Internet",
            "Q207": "social media such as Facebook or Twitter",
            "Q208": "talking with friends or colleagues",
        },
    ),
    # Q209-Q220 political actions: "done" is the past participle, "do" the base form.
    Form(
        answers={
            "have done": "You have {done}.",
            "might do": "You have not {done}, but you might.",
            "would never do": "You would never {do}.",
        },
        items={
            "Q209": {"done": "signed a petition", "do": "sign a petition"},
            "Q210": {"done": "joined in boycotts", "do": "join in boycotts"},
            "Q211": {"done": "attended peaceful demonstrations", "do": "attend peaceful demonstrations"},
            "Q212": {"done": "joined strikes", "do": "join strikes"},
            "Q213": {"done": "donated to a group or campaign", "do": "donate to a group or campaign"},
            "Q214": {"done": "contacted a government official", "do": "contact a government official"},
            "Q215": {
                "done": "encouraged others to take action about political issues",
                "do": "encourage others to take action about political issues",
            },
            "Q216": {"done": "encouraged others to vote", "do": "encourage others to vote"},
            "Q217": {
                "done": "searched online for information about politics and political events",
                "do": "search online for information about politics and political events",
            },
            "Q218": {"done": "signed an electronic petition", "do": "sign an electronic petition"},
            "Q219": {
                "done": "encouraged other people online to take any form of political action",
                "do": "encourage other people online to take any form of political action",
            },
            "Q220": {
                "done": "organized political activities, events or protests online",
                "do": "organize political activities, events or protests online",
            },
        },
    ),
    # Q221-Q222 voting at local / national level.
    Form(
        answers={
            "always": "You always vote in {x} elections.",
            "usually": "You usually vote in {x} elections.",
            "never": "You never vote in {x} elections.",
            "not allowed to vote": "You are not allowed to vote in {x} elections.",
        },
        items={"Q221": "local", "Q222": "national"},
    ),
    # Q224-Q233 how often things happen in elections ("it is not often the case that ..." keeps every verb intact).
    Form(
        answers={
            "very often": "In your view, it is very often the case that {x}.",
            "fairly often": "In your view, it is fairly often the case that {x}.",
            "not often": "In your view, it is not often the case that {x}.",
            "not at all often": "In your view, it is not at all often the case that {x}.",
        },
        items={
            "Q224": "votes are counted fairly in your country's elections",
            "Q225": "opposition candidates are prevented from running in your country's elections",
            "Q226": "TV news favors the governing party in your country's elections",
            "Q227": "voters are bribed in your country's elections",
            "Q228": "journalists provide fair coverage of elections in your country",
            "Q229": "election officials are fair in your country's elections",
            "Q230": "rich people buy elections in your country",
            "Q231": "voters are threatened with violence at the polls in your country",
            "Q232": "voters are offered a genuine choice in the elections in your country",
            "Q233": "women have equal opportunities to run for public office in your country",
        },
    ),
    # Q235-Q239 ways of governing the country.
    Form(
        answers={
            "very good": "You think {x} would be a very good way of governing your country.",
            "fairly good": "You think {x} would be a fairly good way of governing your country.",
            "fairly bad": "You think {x} would be a fairly bad way of governing your country.",
            "bad": "You think {x} would be a bad way of governing your country.",
            "very bad": "You think {x} would be a very bad way of governing your country.",
        },
        items={
            "Q235": "having a strong leader who does not have to bother with parliament and elections",
            "Q236": "having experts, not government, make decisions according to what they think is best for the"
            " country",
            "Q237": "having the army rule",
            "Q238": "having a democratic political system",
            "Q239": "having a system governed by religious law in which there are no political parties or elections",
        },
    ),
    # Q241-Q249 characteristics of democracy, 1-10 plus a volunteered "against democracy".
    Form(
        answers={
            "it is against democracy (spontaneous)": "You think it is against democracy that {x}.",
            "#": "On a scale from 1 (not an essential characteristic of democracy) to 10 (an essential characteristic"
            ' of democracy), you rate "{x}" at {n}.',
        },
        items={
            "Q241": "governments tax the rich and subsidize the poor",
            "Q242": "religious authorities ultimately interpret the laws",
            "Q243": "people choose their leaders in free elections",
            "Q244": "people receive state aid for unemployment",
            "Q245": "the army takes over when government is incompetent",
            "Q246": "civil rights protect people from state oppression",
            "Q247": "the state makes people's incomes equal",
            "Q248": "people obey their rulers",
            "Q249": "women have the same rights as men",
        },
    ),
    # Q255-Q259 feeling close to places.
    Form(
        answers={
            "very close": "You feel very close to {x}.",
            "close": "You feel close to {x}.",
            "not very close": "You do not feel very close to {x}.",
            "not close at all": "You do not feel close at all to {x}.",
        },
        items={
            "Q255": "your village, town or city",
            "Q256": "your county, region or district",
            "Q257": "your country",
            "Q258": "your continent",
            "Q259": "the world",
        },
    ),
    # Q275-Q278 education (ISCED levels in plain words).
    Form(
        answers={
            "early childhood education (isced 0) / no education": "{whose} highest level of education is early "
            "childhood education or none at all.",
            "primary education (isced 1)": "{whose} highest level of education is primary education.",
            "lower secondary education (isced 2)": "{whose} highest level of education is lower secondary education.",
            "upper secondary education (isced 3)": "{whose} highest level of education is upper secondary education.",
            "post-secondary non-tertiary education (isced 4)": "{whose} highest level of education is post-secondary"
            " non-tertiary education.",
            "short-cycle tertiary education (isced 5)": "{whose} highest level of education is short-cycle tertiary"
            " education.",
            "bachelor or equivalent (isced 6)": "{whose} highest level of education is a bachelor's degree or"
            " equivalent.",
            "master or equivalent (isced 7)": "{whose} highest level of education is a master's degree or equivalent.",
            "doctoral or equivalent (isced 8)": "{whose} highest level of education is a doctoral degree or"
            " equivalent.",
        },
        items={
            "Q275": {"whose": "Your"},
            "Q276": {"whose": "Your spouse's"},
            "Q277": {"whose": "Your mother's"},
            "Q278": {"whose": "Your father's"},
        },
    ),
    # Q279-Q280 employment status of the respondent / spouse.
    Form(
        answers={
            "full time (30 hours a week or more)": "{who} {work} full time (30 hours a week or more).",
            "part time (less than 30 hours a week)": "{who} {work} part time (less than 30 hours a week).",
            "self employed": "{who} {be} self-employed.",
            "retired/pensioned": "{who} {be} retired.",
            "housewife not otherwise employed": "{who} {be} a homemaker, not otherwise employed.",
            "student": "{who} {be} a student.",
            "unemployed": "{who} {be} unemployed.",
            "other": "{who} {have} an employment status other than those listed.",
        },
        items={
            "Q279": {"who": "You", "work": "work", "be": "are", "have": "have"},
            "Q280": {"who": "Your spouse", "work": "works", "be": "is", "have": "has"},
        },
    ),
    # Q281-Q283 occupational group; the codebook's "(for example: ...)" becomes "such as ...".
    Form(
        answers={
            "never had a job": "{who} {never_had} had a job.",
            "professional and technical (for example: doctor, teacher, engineer, artist, accountant, nurse)": "{who}"
            " {worked} in a professional or technical occupation, for example as a doctor, teacher, engineer,"
            " artist, accountant or nurse.",
            "higher administrative (for example: banker, executive in big business, high government official, union"
            " official)": "{who} {worked} in a higher administrative position, for example as a banker, executive in"
            " big business, high government official or union official.",
            "clerical (for example: secretary, clerk, office manager, civil servant, bookkeeper": "{who} {worked} in a"
            " clerical job, for example as a secretary, clerk, office manager, civil servant or bookkeeper.",
            "sales (for example: sales manager, shop owner, shop assistant, insurance agent, buyer)": "{who} {worked}"
            " in sales, for example as a sales manager, shop owner, shop assistant, insurance agent or buyer.",
            "service (for example: restaurant owner, police officer, waitress, barber, caretaker)": "{who} {worked} in"
            " services, for example as a restaurant owner, police officer, waitress, barber or caretaker.",
            "skilled worker (for example: foreman, motor mechanic, printer, seamstress, tool and die maker,"
            " electrician)": "{who} {worked} as a skilled worker, such as a foreman, motor mechanic, printer,"
            " seamstress, tool and die maker or electrician.",
            "semi-skilled worker (for example: bricklayer, bus driver, cannery worker, carpenter, sheet metal worker,"
            " baker)": "{who} {worked} as a semi-skilled worker, such as a bricklayer, bus driver, cannery worker,"
            " carpenter, sheet metal worker or baker.",
            "unskilled worker (for example: labourer, porter, unskilled factory worker, cleaner)": "{who} {worked} as"
            " an unskilled worker, such as a laborer, porter, unskilled factory worker or cleaner.",
            "farm worker (for example: farm labourer, tractor driver)": "{who} {worked} as a farm worker, such as a"
            " farm laborer or tractor driver.",
            "farm owner, farm manager": "{who} {worked} as a farm owner or farm manager.",
            "jp,kg,tj: other": "{who} {worked} in an occupational group other than those listed.",
        },
        items={
            "Q281": {"who": "You", "worked": "work (or last worked)", "never_had": "have never"},
            "Q282": {"who": "Your spouse", "worked": "works (or last worked)", "never_had": "has never"},
            "Q283": {"who": "When you were 14 years old, your father", "worked": "worked", "never_had": "had never"},
        },
    ),
    # Single 1-10 scales: the end labels are written out so each number keeps its meaning.
    Form(
        answers={"#": SCALE},
        items={
            "Q48": _scale(
                "no choice at all",
                "a great deal of choice",
                "you rate the freedom of choice and control you have over the way your life turns out at",
            ),
            "Q49": _scale(
                "completely dissatisfied", "completely satisfied", "you rate your satisfaction with your life at"
            ),
            "Q50": _scale(
                "completely dissatisfied",
                "completely satisfied",
                "you rate your satisfaction with the financial situation of your household at",
            ),
            "Q90": _scale(
                "being effective",
                "being democratic",
                "you place your view of what international organizations should prioritize at",
            ),
            "Q106": _scale(
                "incomes should be made more equal", "there should be greater incentives for individual effort"
            ),
            "Q107": _scale(
                "private ownership of business should be increased",
                "government ownership of business should be increased",
            ),
            "Q108": _scale(
                "the government should take more responsibility to ensure that everyone is provided for",
                "people should take more responsibility to provide for themselves",
            ),
            "Q109": _scale("competition is good", "competition is harmful"),
            "Q110": _scale(
                "in the long run, hard work usually brings a better life",
                "hard work doesn't generally bring success; it's more a matter of luck and connections",
            ),
            "Q112": _scale(
                "there is no corruption in your country",
                "there is abundant corruption in your country",
                "you place your country at",
            ),
            "Q120": _scale(
                "no risk at all",
                "very high risk",
                "you rate the risk in your country of being held accountable for giving or receiving a bribe,"
                " gift or favor in return for public service at",
            ),
            "Q163": _scale(
                "a lot worse off",
                "a lot better off",
                "you rate how much better or worse off the world is because of science and technology at",
            ),
            "Q164": _scale("not at all important", "very important", "you rate the importance of God in your life at"),
            "Q176": _scale(
                "completely agree",
                "completely disagree",
                'you rate the statement "nowadays one often has trouble deciding which moral rules are the right'
                ' ones to follow" at',
            ),
            "Q240": _scale("left", "right", "you place your political views at"),
            "Q250": _scale(
                "not at all important",
                "absolutely important",
                "you rate the importance of living in a country that is governed democratically at",
            ),
            "Q251": _scale(
                "not at all democratic",
                "completely democratic",
                "you rate how democratically your country is being governed today at",
            ),
            "Q252": _scale(
                "not satisfied at all",
                "completely satisfied",
                "you rate your satisfaction with how the political system is functioning in your country at",
            ),
            # The codebook labels Q288's points "Lower step", "second step", "Eight step": the number says it.
            "Q288": _scale(
                "the lowest income group in your country",
                "the highest income group",
                "you place your household's income at",
            ),
        },
    ),
]


# ---------------------------------------------------------------------------------------------------------------
# Per-question templates
# ---------------------------------------------------------------------------------------------------------------

# A full sentence per answer code, where the options are too different for one template.
SENTENCES: dict[str, dict[int, str]] = {
    "Q56": {
        1: "You are better off than your parents were at your age.",
        2: "You are worse off than your parents were at your age.",
        3: "Your standard of living is about the same as your parents' was at your age.",
    },
    "Q57": {
        1: "You think that most people can be trusted.",
        2: "You think that you need to be very careful in dealing with people.",
    },
    "Q105": {
        0: "You are not a member of any other organization.",
        1: "You are an inactive member of some other organization.",
        2: "You are an active member of some other organization.",
    },
    "Q111": {
        1: "You think protecting the environment should be given priority, even if it causes slower economic growth"
        " and some loss of jobs.",
        2: "You think economic growth and creating jobs should be the top priority, even if the environment suffers"
        " to some extent.",
        3: "Asked whether the environment or economic growth should have priority, you give some other answer.",
    },
    "Q131": {
        1: "You feel very secure these days.",
        2: "You feel quite secure these days.",
        3: "You do not feel very secure these days.",
        4: "You do not feel secure at all these days.",
    },
    "Q144": {
        1: "You have been the victim of a crime during the past year.",
        2: "You have not been the victim of a crime during the past year.",
    },
    "Q145": {
        1: "Someone in your family has been the victim of a crime during the past year.",
        2: "No one in your family has been the victim of a crime during the past year.",
    },
    "Q151": {
        1: "You would be willing to fight for your country if there were a war.",
        2: "You would not be willing to fight for your country if there were a war.",
    },
    "Q171": {
        1: "Apart from weddings and funerals, you attend religious services more than once a week.",
        2: "Apart from weddings and funerals, you attend religious services once a week.",
        3: "Apart from weddings and funerals, you attend religious services once a month.",
        4: "Apart from weddings and funerals, you attend religious services only on special holy days.",
        5: "Apart from weddings and funerals, you attend religious services once a year.",
        6: "Apart from weddings and funerals, you attend religious services less often than once a year.",
        7: "Apart from weddings and funerals, you never or practically never attend religious services.",
    },
    "Q172": {
        1: "Apart from weddings and funerals, you pray several times a day.",
        2: "Apart from weddings and funerals, you pray once a day.",
        3: "Apart from weddings and funerals, you pray several times each week.",
        4: "Apart from weddings and funerals, you pray only when attending religious services.",
        5: "Apart from weddings and funerals, you pray only on special holy days.",
        6: "Apart from weddings and funerals, you pray once a year.",
        7: "Apart from weddings and funerals, you pray less often than once a year.",
        8: "Apart from weddings and funerals, you never or practically never pray.",
    },
    "Q200": {
        1: "When you get together with your friends, you frequently discuss political matters.",
        2: "When you get together with your friends, you occasionally discuss political matters.",
        3: "When you get together with your friends, you never discuss political matters.",
    },
    "Q254": {
        1: "You are very proud of your nationality.",
        2: "You are quite proud of your nationality.",
        3: "You are not very proud of your nationality.",
        4: "You are not at all proud of your nationality.",
        5: "You do not have the nationality of the country you live in.",
    },
    "Q260": {1: "You are male.", 2: "You are female."},
    "Q263": {
        1: "You were born in the country you live in.",
        2: "You are an immigrant to the country you live in (you were born outside it).",
    },
    "Q264": {1: "Your mother is not an immigrant.", 2: "Your mother is an immigrant to the country you live in."},
    "Q265": {1: "Your father is not an immigrant.", 2: "Your father is an immigrant to the country you live in."},
    "Q269": {
        1: "You are a citizen of the country you live in.",
        2: "You are not a citizen of the country you live in.",
        3: "You have applied for citizenship of the country you live in and are awaiting a decision.",
    },
    "Q270": {
        1: "You live alone.",
        **{n: f"Your household has {NUMBER_WORDS[n]} members, including yourself." for n in range(2, 7)},
        7: "Your household has seven or more members, including yourself.",
    },
    "Q271": {
        1: "You do not live with your parents or parents-in-law.",
        2: "You live with one or both of your own parents.",
        3: "You live with one or both of your parents-in-law.",
        4: "You live with your own parents as well as your parents-in-law.",
    },
    "Q274": {
        0: "You have no children.",
        1: "You have one child.",
        **{n: f"You have {NUMBER_WORDS[n]} children." for n in range(2, 7)},
        7: "You have seven or more children.",
    },
    "Q285": {
        1: "You are the chief wage earner in your household.",
        2: "You are not the chief wage earner in your household.",
    },
    # The codebook labels code 3 "Spent some savings and borrowed money" like code 4; the questionnaire says
    # "spent some savings", which keeps the two answers apart.
    "Q286": {
        1: "During the past year, your family saved money.",
        2: "During the past year, your family just got by.",
        3: "During the past year, your family spent some of its savings.",
        4: "During the past year, your family spent its savings and borrowed money.",
    },
    "Q289": {
        0: "You belong to no religious denomination.",
        1: "You are Roman Catholic.",
        2: "You are Protestant.",
        3: "You are an Orthodox Christian (Russian, Greek or another Orthodox church).",
        4: "You are Jewish.",
        5: "You are Muslim.",
        6: "You are Hindu.",
        7: "You are Buddhist.",
        8: "You belong to another Christian denomination, such as an Evangelical, Pentecostal or Free church.",
        9: "You belong to a religious denomination other than those listed.",
    },
}

# A sentence around the option label: {x} is the label with a lower-case first letter (or OPTION_WORDING's),
# {label} the label as it is (country and city names).
TEMPLATES: dict[str, str] = {
    "Q42": "You believe that {x}.",
    "Q46": "Taking all things together, you are {x}.",
    "Q47": "All in all, you describe your state of health these days as {x}.",
    "Q91": "You believe that {label} is not a permanent member of the United Nations Security Council.",
    "Q92": "You believe that the headquarters of the International Monetary Fund (IMF) are in {label}.",
    "Q93": "You believe that Amnesty International deals with {x}.",
    "Q118": "You think that ordinary people like you {x} have to pay a bribe, give a gift or do a favor to local"
    " officials and service providers in order to get the services they need.",
    "Q121": "You think the impact of immigrants on the development of your country is {x}.",
    "Q130": "About people from other countries coming to your country to work, you think the government should {x}.",
    "Q149": "If you had to choose between freedom and equality, you would consider {x} more important.",
    "Q150": "If you had to choose between freedom and security, you would consider {x} more important.",
    "Q152": "You think the most important goal for your country over the next ten years should be {x}.",
    "Q153": "You think the second most important goal for your country over the next ten years should be {x}.",
    "Q154": "You think the most important aim for your country is {x}.",
    "Q155": "You think the second most important aim for your country is {x}.",
    "Q156": "In your opinion, the most important of these aims is {x}.",
    "Q157": "In your opinion, the second most important of these aims is {x}.",
    "Q173": "You describe yourself as {x}.",
    "Q174": "You think the basic meaning of religion is to {x}.",
    "Q175": "You think the basic meaning of religion is to {x}.",
    "Q199": "You are {x} in politics.",
    "Q234": "Having honest elections is {x} to you.",
    "Q253": "You think there is {x} for individual human rights in your country nowadays.",
    "Q273": "You are {x}.",
    "Q284": "You work (or worked) for {x}.",
    "Q287": "You describe yourself as belonging to the {x}.",
}

# Rewordings of single option labels for TEMPLATES (first/second choices share their lists).
_GOALS = {
    2: "strong defence forces",
    3: "giving people more say about how things are done",
    4: "making your country's cities and countryside more beautiful",
}
_AIMS = {3: "progress toward a society in which ideas count more than money"}
OPTION_WORDING: dict[str, dict[int, str]] = {
    "Q42": {
        1: "the entire way society is organized must be radically changed by revolutionary action",
        2: "society must be gradually improved by reforms",
        3: "the present society must be valiantly defended against all subversive forces",
    },
    "Q93": {3: "the destruction of historic monuments"},
    # The codebook's "Rather bad" is the bottom of the scale (the questionnaire and metadata: "Very bad").
    "Q121": {1: "very bad", 3: "neither good nor bad"},
    "Q152": _GOALS,
    "Q153": {
        2: "making sure your country has strong defence forces",
        3: "seeing that people have more say about how things are done at their jobs and in their communities",
        4: _GOALS[4],
    },
    "Q156": _AIMS,
    "Q157": _AIMS,
    "Q173": {2: "a person who is not religious"},
    "Q273": {2: "living together with a partner as if married"},
    "Q284": {
        1: "a government or public institution",
        2: "a private business or industry",
        3: "a private non-profit organization",
    },
}


# ---------------------------------------------------------------------------------------------------------------
# Long name lists: countries, languages, parties, ethnic groups
# ---------------------------------------------------------------------------------------------------------------

COUNTRY_NAMES = {
    "Czech Rep.": "the Czech Republic",
    "Dominican Rep.": "the Dominican Republic",
    "Taiwan ROC": "Taiwan",
    "Hong Kong SAR": "Hong Kong",
    "Macau SAR": "Macau",
    "Bosnia Herzegovina": "Bosnia and Herzegovina",
    "Virgin Islands (British)": "the British Virgin Islands",
    "German Democratic Republic (former country)": "the former German Democratic Republic (East Germany)",
    "Other": "a country other than those listed",
}
_COUNTRIES_WITH_THE = re.compile(r"^(United |Netherlands|Philippines|Bahamas|Gambia|Maldives)|Islands\b")


def country_phrase(label: str) -> str:
    """A country name as it reads in a sentence: "the United States", "Colombia"."""
    return _country(label)


def _country(label: str) -> str:
    if label in COUNTRY_NAMES:
        return COUNTRY_NAMES[label]
    return f"the {label}" if _COUNTRIES_WITH_THE.search(label) else label


# Language labels list alternative names ("Spanish; Castilian"); the first is used unless named here.
LANGUAGE_NAMES = {
    "Auslan": "Auslan (Australian Sign Language)",
    "Berber; Amazigh;Tamaziɣt": "Berber (Amazigh)",
    "Greek, Modern": "Greek",
    "Hassaniyya, Klem El Bithan": "Hassaniya Arabic",
    "ilo Ilocano; Ilokano; Iloko": "Ilocano",
    "ven Venda;Tshivenda": "Venda",
    "Kirghiz; Kyrgyz": "Kyrgyz",
    "Lurish; Luri; Bakhtiari": "Luri",
    "Persian; Farsi; Dari": "Persian (Farsi or Dari)",
    "Standard Chinese; Mandarin; Putonghua; Guoyu": "Mandarin Chinese",
    "Uighur, Uyghur": "Uyghur",
    "Buginese/Bugis": "Buginese",
    "Mayan languages": "a Mayan language",
    "Pamiri languages": "a Pamiri language",
    "Other": "a language other than those listed",
    "Other European": "another European language",
    "Other Chinese dialects": "another Chinese dialect",
    "Other local; aboriginal; tribal, community": "another local, aboriginal or tribal language",
}


def _language(label: str) -> str:
    return LANGUAGE_NAMES.get(label) or re.split(r"[;,]", label)[0].strip()


# Party names needing more than the generic cleaning: truncated in the codebook (55 characters), misspelt,
# person-named lists, or names that need a particular article. Values are written as they go into the sentence.
PARTY_NAMES = {
    "Citizen's Unity, Cristina Fernandez de Kirchner": "Citizen's Unity (Cristina Fernández de Kirchner)",
    "Together for Change, Macri": '"Together for Change" (Macri)',
    "Justicialist [Peronist] Party, Daniel Scioli, Florencio": "the Justicialist (Peronist) Party of Daniel Scioli"
    " and Florencio Randazzo",
    "Republican Proposal, María Eugenia Vidal": "Republican Proposal (María Eugenia Vidal)",
    "Amenian National Congress": "the Armenian National Congress",
    "Australia Greens": "the Australian Greens",
    "We can of Andorra": '"We Can Andorra"',
    "Peaoples National Congress (PNC)": "the People's National Congress (PNC)",
    "Socialist Union of Popular Forces USFP Union Socialiste des Forces Populaires -- Al-Ittihad Al- Ishtirakiy"
    " Lilqawat Al-Sha'abiyah": "the Socialist Union of Popular Forces (USFP)",
    "Istiqlal Party PI Hizb Al-Istiqlal -- Parti de l'Istiqlal": "the Istiqlal Party",
    "Conservative Christian Party of Belarusian People's Fro": "the Conservative Christian Party of the Belarusian"
    " Popular Front",
    "President Lukashenko": "President Lukashenko",
    "Independent block": "the Independent Bloc",
    "We can": '"We Can"',
    "FDP.The Liberals": "the FDP (The Liberals)",
    "The alternative Left": "the Alternative Left",
    "Freedom and Direct Democracy Tomio Okamura": "Freedom and Direct Democracy (Tomio Okamura)",
    "Freedomites / Party of Free Citizens": "the Party of Free Citizens (Freedomites)",
    "Christian Democratic Union of Germany; Christian Social": "the Christian Democratic Union of Germany and the"
    " Christian Social Union (CDU/CSU)",
    "[New] Liberal Alliance": "the Liberal Alliance",
    "Suma, More Action United Society Movement": 'the "SUMA" (More Action, United Society) Movement',
    "Strong Egypt party": "the Strong Egypt Party",
    "Left Wing Extremist Parties (New Anticapitalist Party,": "a far-left party (such as the New Anticapitalist Party)",
    "Other Left Wing Parties (Radical Leftist Party, Republi": "another left-wing party (such as the Radical Party"
    " of the Left)",
    "Other Environmentalist Parties": "another environmentalist party",
    "Other Right Wing Extremist Parties (The Patriots, Natio": "another far-right party (such as The Patriots)",
    "The Republic On The Move": "the Republic on the Move (La République En Marche)",
    "National forum": "the National Forum",
    "Milan Bandic 365 -- The Party of Labour and Solidarity": "Milan Bandić 365 - The Party of Labour and Solidarity",
    "Rijeka Democratic Alliance -- Alliance of Primorje-Gors": "the Rijeka Democratic Alliance (Alliance of"
    " Primorje-Gorski Kotar)",
    "Hungary's Green Party; Politics Can Be Different": '"Politics Can Be Different" (Hungary\'s Green Party)',
    "Fundamentalists": "the fundamentalists (principlists)",
    "Reformists": "the reformists",
    "Uprightness / chest": '"Uprightness" (the Sadrist list)',
    "State of Law Coallition": "the State of Law Coalition",
    "Hizb allah": "Hezbollah",
    "The people of reform / Faik Sheikh Ali and Sharaouq Aba": 'the "People of Reform" list of Faik Sheikh Ali',
    "The Arab Project in Iraq / Khamis Al-Hanjar": "the Arab Project in Iraq (Khamis al-Khanjar)",
    "The solution / Mohammed and Jamal Karbouli": '"The Solution" (Mohammed and Jamal al-Karbouli)',
    "Kuran / Yousef Mohammed": "the Gorran (Change) Movement of Yousef Mohammed",
    "The New Generation/SASHWAR ABD ALWAHID": "the New Generation movement of Shaswar Abdulwahid",
    "Khaled Al Obeidi": "Khaled al-Obeidi",
    "Member of Parliament Ahmed Al - Jubouri": "Ahmed al-Jubouri, member of parliament",
    "Dawn - The organization of justice, fairness and democr": '"Dawn" - the organization of justice, fairness'
    " and democracy",
    "South Tyrolean People's Party/Trentino Tyrolean Autonom": "the South Tyrolean People's Party / Trentino"
    " Tyrolean Autonomist Party",
    "Casa Pound Italy": '"CasaPound Italy"',
    "Cohesion party": "the Cohesion Party",
    # Kenya's labels repeat the name after the abbreviation, cut off: "Amani National Congress ANC Amani Nat".
    "Amani National Congress ANC Amani National Congress": "the Amani National Congress (ANC)",
    "Democratic Party of Kenya DP Democratic Party": "the Democratic Party of Kenya (DP)",
    "Forum for the Restoration of Democracy–Kenya FORD–Kenya": "the Forum for the Restoration of Democracy-Kenya"
    " (FORD-Kenya)",
    "Forum for the Restoration of Democracy–People FORD-Asil": "the Forum for the Restoration of Democracy-People"
    " (FORD-Asili)",
    "Jubilee Party of Kenya Jubilee Jubilee Party of Kenya": "the Jubilee Party of Kenya",
    "Kenya African National Union KANU Kenya African Nation": "the Kenya African National Union (KANU)",
    "Labour Party of Kenya LPK Labour Party of Kenya": "the Labour Party of Kenya (LPK)",
    "Maendeleo Chap Chap Party MCC Maendeleo Chap Chap Party": "the Maendeleo Chap Chap Party (MCC)",
    "National Rainbow Coalition–Kenya NARC–Kenya National R": "the National Rainbow Coalition-Kenya (NARC-Kenya)",
    "National Super Alliance NASA National Super Alliance": "the National Super Alliance (NASA)",
    "Orange Democratic Movement ODM Orange Democratic Movem": "the Orange Democratic Movement (ODM)",
    "People's Empowerment Party PEP People's Empowerment Pa": "the People's Empowerment Party (PEP)",
    "Thirdway Alliance Party of Kenya Thirdway Alliance Par": "the Thirdway Alliance Party of Kenya",
    "United Democratic Alliance UDA United Democratic Allian": "the United Democratic Alliance (UDA)",
    "United Democratic Forum Party UDFP United Democratic F": "the United Democratic Forum Party (UDFP)",
    "United Democratic Movement UDM United Democratic Moveme": "the United Democratic Movement (UDM)",
    "Unity Party of Kenya UPK Unity Party of Kenya": "the Unity Party of Kenya (UPK)",
    "Wiper Democratic Movement- Kenya WDM-K Wiper Democrati": "the Wiper Democratic Movement-Kenya (WDM-K)",
    "Internal Macedonian Revolutionary Organization - Democr": "the Internal Macedonian Revolutionary Organization -"
    " Democratic Party for Macedonian National Unity (VMRO-DPMNE)",
    "“Alliance of Albanians” Coalition (DR-ADP, UNITETI, NDP": 'the "Alliance of Albanians" coalition',
    "POPGM (Party of United Pensioners and Citizens of Maced": "the Party of United Pensioners and Citizens of"
    " Macedonia (POPGM)",
    "RAM (Roma Aliance of Macedonia)": "the Roma Alliance of Macedonia (RAM)",
    "Democratic Party of Turcs In Macedonia": "the Democratic Party of Turks in Macedonia",
    "Albanian alernativa": '"Albanian Alternative"',
    "Independent Liberal": "the Independent Liberal Party",
    "NIRL: Ulster Unionist": "the Ulster Unionist Party",
    "NIRL: Alliance": "the Alliance Party",
    "NIRL: Sinn Fein": "Sinn Féin",
    "Sinn Fein": "Sinn Féin",
    "Pakistan Muslim League, Nawaz Sharif faction": "the Pakistan Muslim League (Nawaz Sharif faction)",
    "Here-I-Am Prophet Muhammad SAW Movement Pakistan": 'the "Here I Am, O Prophet Muhammad" Movement Pakistan'
    " (Tehreek-e-Labbaik)",
    "Democratic Party´We Are Peru´": 'the "We Are Peru" Democratic Party',
    "Coalition for the Renewal of the Republic – Liberty and": "the Coalition for the Renewal of the Republic -"
    " Liberty and Hope",
    "Workig People's Party": "the Working People's Party",
    "Democratic Party of Serbi": "the Democratic Party of Serbia",
    "Slovak Conservative Party; NETWORK": 'the Slovak Conservative Party ("NETWORK")',
    "Chinese / New Party": "the New Party",
    "Non-partisan & Non-Partisan Solidarity Union": "the Non-Partisan Solidarity Union",
    "The future of determination and happiness": '"The Future of Determination and Happiness"',
    "Lithuanian Poles´ Electoral Action - Christian Family": "the Electoral Action of Poles in Lithuania - Christian"
    " Families Alliance",
    "Lithuanian Peasant [Popular/Greens] Union": "the Lithuanian Peasant and Greens Union",
    "Tunisian Aspiration(s)": '"Tunisian Aspirations"',
    "Popular Front for the Realization of the Objectives of": "the Popular Front for the Realization of the"
    " Objectives of the Revolution",
    "Libertarian": "the Libertarian Party",
    "Accion Democratica: AD": "Democratic Action (Acción Democrática)",
    "National Alliance of Patriotic and Democratic Republica": "the National Alliance of Patriotic and Democratic"
    " Republicans",
    "Come on or Let's go": '"Let\'s Go" (Vamos)',
    "Convergence / Citizens' Movement": "the Citizens' Movement (formerly Convergence)",
    "Bloc Quebecois": "the Bloc Québécois",
    "Our Party": '"Our Party"',
    "European solidarity": '"European Solidarity"',
    "Servant of the people": '"Servant of the People"',
    "Trust the deeds": '"Trust the Deeds"',
    "Sovereignty and freedom": '"Sovereignty and Freedom"',
    "CREO movement": "the CREO Movement",
    "Alliance 90/The Greens": "Alliance 90/The Greens",
}
# Names used without article or quotes: proper names that read as names.
PARTY_PROPER_NAMES = {
    "Hezbollah", "Plaid Cymru", "Nur Otan", "Aontu", "Minkuotang", "Primero Justicia", "Muttahida Majlis-e-Amal",
    "Jamat-e-Islami", "Bangladesh Jamaat-e-Islami", "Asa'ib Ahl al-Haq", "Al Hamanq", "Respublika",
}  # fmt: skip
# A name headed by one of these words is a common noun phrase in English and takes "the" ("the Labour Party").
_PARTY_NOUNS = re.compile(
    r"\b(Party|Parties|Front|Movement|Alliance|Union|Coalition|League|Congress|Federation|Bloc|Block|Organization"
    r"|Group|Forces|Network|Forum|Association|Assembly|Rally|Initiative|Trend|Current|Greens|Democrats|Liberals"
    r"|Christians|Left|Society|Platform|List|Partido|Pole|Accord|Appeal|Regiments|Alignment|Center|Centre)\b"
)


def _party(label: str) -> str:
    """A party name as it reads after "vote for": 'the Labour Party', '"Law and Justice"', 'Hezbollah'."""
    if label in PARTY_NAMES:
        return PARTY_NAMES[label]
    name = re.sub(r"^[A-Z]{2,4}:\s*", "", label)  # "NIRL: Green Party" (country prefix the catalog leaves)
    name = name.replace("´", "'").replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    name = re.sub(r"\s+(--|-|–)\s+", " - ", name).replace("[", "(").replace("]", ")")
    if name in PARTY_PROPER_NAMES or name.startswith('"'):
        return name
    if name.startswith("The "):
        return "the " + name[4:]
    head = re.split(r" - | / ", name)[0]  # "Fidesz - Hungarian Civic Alliance": the article goes by "Fidesz"
    if _PARTY_NOUNS.search(head) and not head[-1].isdigit():
        return "the " + name
    return f'"{name}"'  # a plain-word name ("Attack", "Law and Justice") is quoted so the sentence stays clear


PARTY_CHOICES = {
    1: "You have no right to vote in national elections.",
    2: "You would not vote if there were a national election tomorrow.",
    3: "You would cast a blank ballot if there were a national election tomorrow.",
    4: "You would vote for none of the parties if there were a national election tomorrow.",
    5: "You would vote for some other party if there were a national election tomorrow.",
    7: "You would cast a null (spoiled) vote if there were a national election tomorrow.",
    8: "You would vote for an independent candidate if there were a national election tomorrow.",
}

# Ethnic groups are phrased "You are {phrase}."; by default the phrase is "a/an <label> person". These labels need
# more: plurals, Spanish or dated terms ("Negro" is the Spanish and older English word for Black), skin-tone
# categories, "other" categories and the questionnaire's "please describe".
ETHNIC_GROUPS = {
    "Aboriginal / First Nations": "an Aboriginal (First Nations) person",
    "Aceh": "an Acehnese person",
    "Africans/Negro Black": "a Black African person",
    "Afro half-breed": "a person of mixed African descent",
    "Afro or black": "an Afro-descendant or Black person",
    "Afro-colombian": "an Afro-Colombian person",
    "Afroboliviano": "an Afro-Bolivian person",
    "Afrocaribeño": "an Afro-Caribbean person",
    "Any other Asian background, please describe": "a person of another Asian background",
    "Any other Black / African / Caribbean background, please describe": "a person of another Black, African or"
    " Caribbean background",
    "Any other White background, please describe": "a person of another white background",
    "Arabe": "an Arab person",
    "Arabic": "an Arab person",
    "Arabic (Central Asia)": "an Arab or Central Asian person",
    "Arabic, Central Asian": "an Arab or Central Asian person",
    "Arabs in Kenya (Arabic, Central Asian)": "an Arab or Central Asian person",
    "Ashur": "an Assyrian person",
    "Asian half-breed": "a person of mixed Asian descent",
    "Asiatic": "an Asian person",
    "Australian (English speaking)": "an English-speaking Australian",
    "Belarusians": "a Belarusian person",
    "Belorus": "a Belarusian person",
    "Belwang tribe": "a member of the Belwang tribe",
    "Black (African, African-American, etc.)": "a Black person (African, African-American or similar)",
    "Black, Non-Hispanic": "a Black, non-Hispanic person",
    "Black-African": "a Black African person",
    "Black-Caribbean": "a Black Caribbean person",
    "Black-Other": "a Black person of another background",
    "Blanco": "a white person",
    "Bohemia/Czech Republic": "a Czech person",
    "Brown": "a brown-skinned (moreno) person",
    "Brown - Moreno ou pardo": "a brown-skinned (moreno or pardo) person",
    "Caucasian (White)": "a white (Caucasian) person",
    "Caucasian White": "a white (Caucasian) person",
    "Caucasian white": "a white (Caucasian) person",
    "White, Caucasian": "a white (Caucasian) person",
    "China": "a Chinese person",
    "Cross breed": "a person of mixed ancestry",
    "Dark brown": "a person with dark brown skin",
    "Dark-skinned / Dark-brown": "a dark-skinned (dark brown) person",
    "East Asian (Chinese, Japanese, etc)": "an East Asian person (such as Chinese or Japanese)",
    "East Asian (Chinese, Japanese...)": "an East Asian person (such as Chinese or Japanese)",
    "East Asian Chinese, Japanese, etc": "an East Asian person (such as Chinese or Japanese)",
    "East Asian Chinese, Japanese, etc.": "an East Asian person (such as Chinese or Japanese)",
    "Oriental: Chines, Japanese,...": "an East Asian person (such as Chinese or Japanese)",
    "English / Welsh / Scottish / Northern Irish / British": "English, Welsh, Scottish, Northern Irish or British",
    "European half-breed": "a person of mixed European descent",
    "Flores": "a person from Flores",
    "Gilak/Mazani/Shomali": "a Gilak or Mazani person from northern Iran",
    "Gypsie": "a Roma (Gypsy) person",
    "Gypsy": "a Roma (Gypsy) person",
    "Gypsy or Irish Traveller": "a Gypsy or Irish Traveller",
    "Hakka from Taiwan": "a Hakka person from Taiwan",
    "Hindko": "a Hindko-speaking person",
    "Half Blood": "a person of mixed ancestry (mestizo)",
    "Indigenous / Native": "an Indigenous (Native) person",
    "Indigenous half-breed": "a person of mixed Indigenous descent",
    "Indigenous with no further detail": "an Indigenous person (group not specified)",
    "Indígena": "an Indigenous person",
    "Iranian and Central Asian": "an Iranian or Central Asian person",
    "Jews": "a Jewish person",
    "Kirguís": "a Kyrgyz person",
    "Kurd": "a Kurdish person",
    "Latin American / Hispanic": "a Latin American or Hispanic person",
    "Light brown": "a person with light brown skin",
    "Lor": "a Lur person",
    "Maduranese": "a Madurese person",
    "Mainlander/China": "a Mainlander (of mainland Chinese origin)",
    "Makassar": "a Makassarese person",
    "Malayu": "a Malay person",
    "Melayu": "a Malay person",
    "Matinguian Tribe": "a member of the Matinguian tribe",
    "Tinguian Tribe": "a member of the Tinguian tribe",
    "Mestizo": "a mestizo person",
    "Mestizo / Light brown": "a mestizo (light brown) person",
    "Mestizo(a)": "a mestizo person",
    "Migrant of other origin": "a migrant of another origin",
    "Minnanese from Taiwan": "a Minnanese (Hoklo) person from Taiwan",
    "Mixed race": "a person of mixed race",
    "Mulato": "a mulatto person (of mixed Black and white ancestry)",
    "Mulatto": "a mulatto person (of mixed Black and white ancestry)",
    "Mulatto(a)": "a mulatto person (of mixed Black and white ancestry)",
    "Negro": "a Black person",
    "Negro Black": "a Black person",
    "Negro black": "a Black person",
    "Noba": "a Nubian person",
    "Not pertaining to Indigenous groups": "a person who does not belong to an Indigenous group",
    "Other Africans": "a member of another African ethnic group",
    "Other Africans/Negro Black": "a member of another Black African ethnic group",
    "Other, Non-Hispanic": "a non-Hispanic person of another race",
    "Pashto": "a Pashtun person",
    "Poland": "a Polish person",
    "Ruso": "a Russian person",
    "Russians": "a Russian person",
    "Seraiki": "a Saraiki person",
    "Somalis": "a Somali person",
    "South Asian (Indian, Bangladeshi, Pakistani, Sri Lankan,": "a South Asian person (such as Indian,"
    " Bangladeshi, Pakistani or Sri Lankan)",
    "South Asian (Indian, Pakistani, etc)": "a South Asian person (such as Indian or Pakistani)",
    "South Asian (Indian, Pakistani..)": "a South Asian person (such as Indian or Pakistani)",
    "South Asian India, Pakistani, etc": "a South Asian person (such as Indian or Pakistani)",
    "South Asian Indian, Pakistan, etc.": "a South Asian person (such as Indian or Pakistani)",
    "South Asian Indian, Pakistani, etc.": "a South Asian person (such as Indian or Pakistani)",
    "Southeast Asian (Vietnamese, Cambodian, Malaysian, etc.)": "a Southeast Asian person (such as Vietnamese,"
    " Cambodian or Malaysian)",
    "Southeast Asian: Thai, Vietnamese, Malaysian, etc": "a Southeast Asian person (such as Thai, Vietnamese or"
    " Malaysian)",
    "Taga Kaulo": "a Tagakaulo person",
    "Tamazight (Berber)": "an Amazigh (Berber) person",
    "Tatars": "a Tatar person",
    "Tausog": "a Tausug person",
    "Tayiko": "a Tajik person",
    "Tribe": "a member of a tribal group",
    "Turk": "a Turk",
    "Turk/Azeri": "an Azeri Turk",
    "Tuva": "a Tuvan person",
    "Two plus, non-Hispanic": "a non-Hispanic person of two or more races",
    "Uigur": "a Uyghur person",
    "Ukrainians": "a Ukrainian person",
    "Urdu speaking": "an Urdu-speaking person",
    "West Asian (Iranian, Afghan, etc.)": "a West Asian person (such as Iranian or Afghan)",
    "White": "a white person",
    "White and Asian": "a person of mixed white and Asian ancestry",
    "White and Black African": "a person of mixed white and Black African ancestry",
    "White and Black Caribbean": "a person of mixed white and Black Caribbean ancestry",
    "White, non-Hispanic": "a white, non-Hispanic person",
    "Yazidis": "a Yazidi person",
    "Other": "a member of an ethnic group not listed for your country",
    "Others": "a member of an ethnic group not listed for your country",
    "Other ethnic group": "a member of an ethnic group not listed for your country",
}


def _ethnic_group(label: str) -> str:
    phrase = ETHNIC_GROUPS.get(label) or f"{_article(label)} {label} person"
    return f"You are {phrase}."


def _vote(answer: int, label: str) -> str:
    if answer in PARTY_CHOICES:
        return PARTY_CHOICES[answer]
    return f"You would vote for {_party(label)} if there were a national election tomorrow."


def _year_of_birth(question: Question, answer: int) -> str:
    if answer not in YEAR_RANGE:
        raise ValueError(f"{question.code}: {answer} is not a plausible year of birth")
    return f"You were born in {answer}."


def _age(question: Question, answer: int) -> str:
    if answer not in AGE_RANGE:
        raise ValueError(f"{question.code}: {answer} is not a plausible age")
    return f"You are {answer} years old."


# code -> (answer, label) -> sentence; labels are the catalog's, per-country ones included.
SPECIAL: dict[str, Callable[[int, str], str]] = {
    "Q223": _vote,
    "Q266": lambda answer, label: f"You were born in {_country(label)}.",
    "Q267": lambda answer, label: f"Your mother was born in {_country(label)}.",
    "Q268": lambda answer, label: f"Your father was born in {_country(label)}.",
    "Q272": lambda answer, label: f"At home, you normally speak {_language(label)}.",
    "Q290": lambda answer, label: _ethnic_group(label),
}


def _count(sentence: str) -> Callable[[Question, int], str]:
    """Household size and number of children: codes 0-7 have sentences; some releases store larger counts."""

    def render(question: Question, answer: int) -> str:
        if answer in SENTENCES[question.code]:
            return SENTENCES[question.code][answer]
        if not 0 <= answer <= 40:
            raise ValueError(f"{question.code}: {answer} is not a plausible count")
        return sentence.format(answer)

    return render


# Free numbers: the answer is the value itself, there is no option list.
NUMBERS: dict[str, Callable[[Question, int], str]] = {
    "Q261": _year_of_birth,
    "Q262": _age,
    "Q270": _count("Your household has {} members, including yourself."),
    "Q274": _count("You have {} children."),
}


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------

_FORM_OF: dict[str, Form] = {code: form for form in GROUPS for code in form.items}


def _options(question: Question) -> dict[int, str]:
    """Every option of the question, the per-country ones (codes <country>*1000+n, unique) included."""
    options = dict(question.options)
    for country_options in question.country_options.values():
        options.update(country_options)
    return options


def _fallback(question: Question, answer: int, label: str) -> str:
    """Safety net for a question no table covers (the tests check that none does)."""
    return f'Asked "{question.text}", you answered "{label}".'


def render_statement(question: Question, answer: int) -> str:
    """The answer as a natural second-person sentence ("Family is very important in your life.").

    Raises ValueError if `answer` is not one of the question's answer codes (or, for year of birth and age, not
    a plausible number).
    """
    code = question.code
    try:  # data frames hand over 5.0 or numpy integers; the sentence must say "5"
        whole = int(answer)
    except (TypeError, ValueError):
        raise ValueError(f"{code}: {answer!r} is not an answer code") from None
    if whole != answer:
        raise ValueError(f"{code}: {answer!r} is not an answer code")
    answer = whole
    if code in NUMBERS:
        return NUMBERS[code](question, answer)
    label = _options(question).get(answer)
    if label is None:
        raise ValueError(f"{code}: {answer!r} is not an answer code of this question ({question.label})")
    if code in SPECIAL:
        sentence = SPECIAL[code](answer, label)
    elif code in _FORM_OF:
        sentence = _FORM_OF[code].render(code, answer, label)
    elif code in SENTENCES:
        sentence = SENTENCES[code][answer]
    elif code in TEMPLATES:
        wording = OPTION_WORDING.get(code, {}).get(answer) or _lower_first(label)
        sentence = TEMPLATES[code].format(x=wording, label=label)
    else:
        sentence = _fallback(question, answer, label)
    return sentence[0].upper() + sentence[1:]
