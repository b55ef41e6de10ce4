"""A caller's answer to "how would you rate this call, from 1 to 5?", read from ASR text.

Callers answer in whole sentences ("I'd give it a 3", "four stars", "five out of five"), and
some echo the question back ("one to five... four").  A rating is taken only when exactly one
number from 1 to 5 is left once the scale itself is set aside: "three or four", "ten" and
"zero" are not ratings, and the survey asks again rather than store a guess.
"""

from __future__ import annotations

import re

from voicebot.nlu.entities import ORDINALS, extract_choice, tokens

LOWEST, HIGHEST = 1, 5

# The scale, when the caller repeats it: "out of five", "of 5", "/5", "one to five", "1-5".
_SCALE = re.compile(
    r"\b(?:out\s+)?of\s+(?:five|5)\b"
    r"|/\s*5\b"
    r"|\b(?:between\s+)?(?:one|1)\s*(?:to|through|and|-|–)\s*(?:five|5)\b"
)


def parse_rating(text: str) -> int | None:
    """The rating 1–5 said in ``text``, or None when there is none, or more than one."""
    toks = tokens(_SCALE.sub(" ", text.lower()))
    kept: list[str] = []
    for i, tok in enumerate(toks):
        if tok in ORDINALS:  # "first of all", "the second time": an ordinal is not a score
            continue
        if tok == "one" and i > 0 and toks[i - 1] in ORDINALS:  # "the third one"
            continue
        if kept and tok == kept[-1]:  # "five, five": said twice, one rating
            continue
        kept.append(tok)
    return extract_choice(" ".join(kept), HIGHEST)
