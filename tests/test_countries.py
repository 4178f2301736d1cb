"""Per-country options (Q223 parties, Q290 ethnic groups) for every country the codebook knows."""

from __future__ import annotations

import json
import re

import pytest

from valuesim.data.catalog import COUNTRY_SPECIFIC, _numeric_country_codes
from valuesim.data.labels import LabelMapper, _question_choices


def test_country_codes_by_iso_then_by_name():
    """ISO 3166 decides where the codebook's names differ ("Russian Federation" vs "Russia"); the codebook's names
    decide where WVS uses codes ISO does not have (Morocco "MOR", Northern Ireland 909); numeric codes missing from
    the alpha list get their ISO alpha-3 (Hong Kong 344)."""
    numeric = {"643": "Russia", "446": "Macao SAR", "504": "Morocco", "909": "Northern Ireland", "344": "Hong Kong SAR"}
    alpha = {"RUS": "Russian Federation", "MAC": "Macao", "MOR": "Morocco", "NIR": "Northern Ireland"}
    assert _numeric_country_codes(numeric, alpha) == {"RUS": 643, "MAC": 446, "MOR": 504, "NIR": 909, "HKG": 344}


@pytest.mark.parametrize("code", sorted(COUNTRY_SPECIFIC))
def test_every_codebook_country_maps_its_own_labels(wvs_dir, catalog, code):
    """Every numeric prefix of the codebook's per-country options belongs to a country, and each country's own
    labels, as a labelled export spells them ("USA: Republican Party" or without the prefix), map to their codes."""
    choices = json.loads((wvs_dir / "codebook.json").read_text())[code]["choices"]
    prefixes = {int(c) // 1000 for c in choices if int(c) >= 1000}
    question = catalog[code]
    owner = {next(iter(opts)) // 1000: a3 for a3, opts in question.country_options.items()}
    assert prefixes <= set(owner), f"{code}: options of numeric codes {sorted(prefixes - set(owner))} have no country"
    for prefix in prefixes:
        a3 = owner[prefix]
        mapper = LabelMapper(code, _question_choices(question, a3))
        own = {int(c): label for c, label in choices.items() if int(c) // 1000 == prefix}
        codes_of: dict[str, set[int]] = {}
        for c, label in own.items():
            codes_of.setdefault(re.sub(r"^[A-Z]{2,4}:\s*", "", label).lower(), set()).add(c)
        for label in own.values():
            bare = re.sub(r"^[A-Z]{2,4}:\s*", "", label)
            # a few labels name two codes of one country (Serbia's parties, Pakistan's "Hindko"): a labelled export
            # cannot tell them apart, and either code is right
            expected = codes_of[bare.lower()]
            for spelling in (label, bare):
                known, mapped = mapper(spelling)
                assert known and mapped in expected, (a3, spelling, mapped)
