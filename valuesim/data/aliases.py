"""Reviewed label variants between WVS-7 data releases and the codebook.

Keys are labels as they appear in the files, values the codebook label they mean (both compared after
`labels.normalize`: case, quotes and spacing do not matter), or None for a missing answer. Each entry was
checked against the question's codebook options; add new ones the same way (run
`valuesim data build --report-unknown` to list what is left).
"""

# Missing-answer labels, whatever the question.
MISSING_LABELS = {
    "don't know",
    "dont know",
    "no answer",
    "not asked",
    "not asked in survey",
    "not asked in this country",
    "missing",
    "missing; not available",
    "missing; unknown",
    "not applicable",
    "no answer/refused",
}

# Labels that mean "no answer / not applicable" in one release or another: "Not applicable; No spouse/partner",
# "INAP; Filter of not currently active", "Other missing; Multiple answers Mail (EVS)", "Don't -9:-2".
MISSING_PATTERN = r"(not applicable|inap|other missing|don't -\d).*"

# Variants that mean the same option wherever they occur.
GLOBAL_ALIASES: dict[str, str | None] = {
    "neither agree or disagree": "Neither agree nor disagree",
    "neither agree nor disagree": "Neither agree or disagree",
    "agree strongly": "Strongly agree",
    "strongly agree": "Agree strongly",
    "disagree strongly": "Strongly disagree",
    "strongly disagree": "Disagree strongly",
}

# Per-question variants: {question code: {label in file: codebook label}}.
ALIASES: dict[str, dict[str, str | None]] = {
    # release 1.5.0 spells the scale ends out in full
    "Q106": {
        "Incomes should be made more equal": "Incomes more equal",
        "There should be greater incentives for individual effort": "Larger income differences",
    },
    "Q111": {
        "Protecting environment": "A: Protect environment",
        "Economy growth and creating jobs": "B: Economic growth",
    },
    "Q146": {"A good deal": "A great deal"},
    "Q152": {
        "Making sure this country has strong defence forces": "Strong defence forces",
        "Seeing that people have more say about how are done at their jobs and in their communities": (
            "People have more say about how things are done"
        ),
    },
    "Q153": {"Not applicable: No second choice": None},
    "Q223": {
        "BGD: Bangladesh Awami League (BAL)": "Bangladesh Awami League",
        "BGD: Bangladesh Nationalist Party (BNP)": "Bangladesh Nationalist Party",
    },
    "Q266": {"Czechia": "Czech Rep."},
    "Q267": {"Czechia": "Czech Rep."},
    "Q268": {"Czechia": "Czech Rep."},
    "Q269": {"Yes": "Yes, I am a citizen of this country", "No": "Not, I am not a citizen of this country"},
    "Q279": {"Homemaker not otherwise employed": "Housewife not otherwise employed"},
    "Q280": {"Homemaker not otherwise employed": "Housewife not otherwise employed"},
    # the codebook's label for code 3 ("Spent some savings and borrowed money") repeats code 4's; the data is right
    "Q286": {"Spent some savings": "Spent some savings and borrowed money"},
    "Q289": {
        "Catholic (Roman/Greek/etc)": "Roman Catholic",
        "Other Christian (Jehova withness...)": "Other Christian (Evangelical/Pentecostal/Fee church/etc.)",
    },
}
