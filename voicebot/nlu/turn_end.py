"""Does what the caller said so far sound finished?  The word-level half of ending a turn early.

The pipeline transcribes a caller's pause before the silence timeout ends it; when that text
is a confident request the turn can end at once.  These checks keep callers who pause
mid-sentence from being cut off: a fragment that ends on a word which needs another after it
("I'd like to …", "my card and …", "um"), trails off in Whisper's punctuation ("…", ",", "-"),
or holds a number (a caller reading digits or an amount pauses between groups) is never
finished, whatever the classifier thinks of it.  Nor is one without a verb or of fewer than
three words: "my card …" is a confident "lost card" to the classifier and usually the subject
of a sentence still being said ("… was stolen", "… is blocked").  A caller who says only
"balance" waits out the silence, some 150 ms more; one cut off mid-sentence repeats it all.
"""

from __future__ import annotations

import re

from voicebot.nlu import entities

# Words a sentence does not end on: articles, possessives, prepositions, conjunctions,
# auxiliaries and modal verbs, "want/like/need" without an object, hesitations.
UNFINISHED_ENDINGS = frozenset("""
a an the my our your his her their its this that these those some any
to of for from with about at in on into onto by as than
and or but so because if when while then also plus
is are was were be been am do does did have has had can could would should will shall may might must
i i'm i'd i've i'll we we're we'd you you're it it's there there's
want wanted wanna like need needed trying try going gonna get got check know tell
um uh er erm ah hmm well like
""".split())

# A request has a verb: be/have/do and the modal forms, contractions, common request verbs
# (any word ending in -ed counts as a past tense too).
VERBS = frozenset("""
be is are was were am been being 's 're 've 'd 'll isn't aren't wasn't weren't
have has had do does did don't doesn't didn't can can't could would will won't
want need like lost lose stole stolen steal check pay make send open close block cancel freeze frozen
talk speak tell know see get got give find found order transfer move show report help reset change
update dispute say call look hear keep stop start put take took went go goes left
""".split())
MIN_WORDS = 3

_TRAILING = re.compile(r"(\.\.\.|…|,|-|–|—|:|;)\s*$")
_WORD = re.compile(r"[a-z']+")


def unfinished(text: str) -> bool:
    """True when the text stops where a sentence cannot."""
    stripped = text.strip()
    if not stripped or _TRAILING.search(stripped):
        return True
    words = _WORD.findall(stripped.lower().replace("’", "'"))
    return not words or words[-1] in UNFINISHED_ENDINGS


def holds_number(text: str) -> bool:
    """Digits or number words: the caller may be reading a number and pausing between groups."""
    return any(ch.isdigit() for ch in text) or entities.extract_digits(text) is not None


def has_verb(text: str) -> bool:
    """A verb from ``VERBS`` (contractions split: "what's" has "'s"), or any -ed word."""
    for word in _WORD.findall(text.lower().replace("’", "'")):
        stem, apostrophe, tail = word.partition("'")
        if (word in VERBS or stem in VERBS or (apostrophe and "'" + tail in VERBS)
                or (len(word) > 4 and word.endswith("ed"))):
            return True
    return False


def sounds_finished(text: str) -> bool:
    """All of the checks above: what a pause's transcript must pass to end the turn early."""
    words = _WORD.findall(text.lower())
    return len(words) >= MIN_WORDS and not unfinished(text) and not holds_number(text) and has_verb(text)
