"""The sample bank domain with one setting changed, for tests that are not about that setting.

The bank records its voice calls, so every call starts with a consent prompt (~6 s of real
time): a call test that is not about recording turns it off (``unrecorded``).  A test that puts
several failures into one call raises ``rules.max_no_input`` (``patient``) so that they are
re-prompted instead of ending in the no-input transfer.  A variant is validated as the domain's
own settings are (it is a domain a designer could have written) and shares the trained
classifier.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from voicebot.nlu.nlu import Domain


def _with(domain: Domain, section: str, **fields: Any) -> Domain:
    """``domain`` with fields of ``settings.<section>`` changed."""
    settings = domain.spec.settings
    part = getattr(settings, section)
    changed = type(part).model_validate({**part.model_dump(), **fields})
    spec = domain.spec.model_copy(update={"settings": settings.model_copy(update={section: changed})})
    return dataclasses.replace(domain, spec=spec)


def unrecorded(domain: Domain) -> Domain:
    """The domain without call recording: no consent prompt after the greeting."""
    return _with(domain, "recording", record=False)


def patient(domain: Domain, max_no_input: int) -> Domain:
    """The domain re-prompting up to ``max_no_input - 1`` silences (or lost answers) in a row."""
    return _with(domain, "rules", max_no_input=max_no_input)
