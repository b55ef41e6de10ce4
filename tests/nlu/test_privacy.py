"""Recording consent and masked card digits, in the pure dialog: the consent prompt, opting out
by key and by words, and what a trace, a transcript and the privacy view show while a
sensitive slot is asked for."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from voicebot.backends import FakeBank
from voicebot.nlu.dialog import (Ask, CallStarted, Dialog, DialogContext, DtmfPressed, Say, UserSaid, mask_numbers,
                                 mask_value)
from voicebot.nlu.domain import Slot, load_domain_spec
from voicebot.nlu.nlu import Domain
from voicebot.textchat import turn

CONSENT = "This call may be recorded"


def with_spec(bank, root: Path) -> Domain:
    """An edited copy of the bank, sharing the bank's trained classifier (same intents)."""
    return Domain(spec=load_domain_spec(root), classifier=bank.classifier, fingerprint="edited")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def secure_bank(bank, bank_copy: Path) -> Domain:
    """The bank, whose lost-card flow also asks for the card's three-digit security code (a
    sensitive slot without ``mask: last4``)."""
    (bank_copy / "slots.yaml").write_text((bank_copy / "slots.yaml").read_text() + """
  security_code:
    type: digits
    min_length: 3
    max_length: 3
    sensitive: true
    prompt: ask_security_code
""")
    edit(bank_copy / "prompts.yaml", "  greeting:", "  ask_security_code: Please say or key in the three digit"
                                                  " security code on the back of the card.\n  greeting:")
    edit(bank_copy / "flows.yaml", "      - ask: card_last4\n", "      - ask: card_last4\n      - ask: security_code\n")
    return with_spec(bank, bank_copy)


class Caller:
    def __init__(self, domain: Domain, channel: str = "sip") -> None:
        self.dialog = Dialog(domain, DialogContext(caller_number="+15551234567", channel=channel,
                                                   today=date(2026, 11, 25)))
        self.bank = FakeBank(today=date(2026, 11, 25))
        self.actions = self._run(CallStarted())

    def _run(self, event) -> list:  # type: ignore[no-untyped-def]
        self.actions = asyncio.run(turn(self.dialog, self.bank, event))
        return self.actions

    def say(self, text: str) -> list:
        return self._run(UserSaid(text))

    def press(self, keys: str) -> list:
        out: list = []
        for key in keys:
            out += self._run(DtmfPressed(key))
        self.actions = out
        return out

    @property
    def text(self) -> str:
        return " ".join(a.text for a in self.actions if isinstance(a, (Say, Ask)))

    @property
    def rule(self) -> str:
        return self.dialog.trace[-1].rule


# ----------------------------------------------------------------------------- consent


def test_a_recorded_voice_call_hears_the_consent_prompt_after_the_greeting(bank) -> None:
    call = Caller(bank)
    says = [(a.prompt, a.text) for a in call.actions]
    assert [p for p, _ in says] == ["greeting", "recording_consent", "main_menu"]
    assert says[1][1].startswith(CONSENT) and "Press 9" in says[1][1]
    assert call.dialog.privacy.records and not call.dialog.privacy.opted_out


def test_text_chats_and_unrecorded_domains_say_nothing_of_recording(bank, bank_copy: Path) -> None:
    assert CONSENT not in Caller(bank, channel="text").text  # /api/chat, `voicebot chat`: nothing recorded
    edit(bank_copy / "domain.yaml", "  record: true", "  record: false")
    call = Caller(with_spec(bank, bank_copy))
    assert CONSENT not in call.text and not call.dialog.privacy.records
    call.press("9")  # not an opt-out key when nothing is recorded
    assert call.rule == "invalid_key:1"


def test_opting_out_by_key_stops_the_recording_and_asks_again(bank) -> None:
    call = Caller(bank)
    call.press("9")
    assert call.rule == "global:recording_opt_out:dtmf"
    assert call.dialog.privacy.opted_out
    assert isinstance(call.actions[0], Say) and call.actions[0].prompt == "recording_stopped"
    assert isinstance(call.actions[-1], Ask) and call.actions[-1].prompt == "main_menu"  # the question again
    call.press("9")  # once out, the key is nothing special
    assert call.rule == "invalid_key:1"


@pytest.mark.parametrize("words", ["Please don't record this call.", "Do not record me", "I’d rather not be recorded"])
def test_opting_out_by_words_works_mid_question(bank, words: str) -> None:
    call = Caller(bank)
    call.say("what's my balance")
    assert call.actions[-1].slot == "account_last4"
    call.say(words)
    assert call.rule == "global:recording_opt_out:speech" and call.dialog.privacy.opted_out
    assert "will not be recorded" in call.text and call.actions[-1].slot == "account_last4"
    call.say("4 5 6 7")
    assert "$2,450.75" in call.text  # the call goes on


def test_the_opt_out_key_is_a_digit_while_digits_are_keyed(bank) -> None:
    call = Caller(bank)
    call.say("I lost my card")
    call.press("9876")
    assert not call.dialog.privacy.opted_out
    assert call.dialog.slots["card_last4"] == "9876"


# ----------------------------------------------------------------------------- masking


def test_card_digits_are_masked_in_the_trace_and_transcript(bank) -> None:
    call = Caller(bank)
    privacy = call.dialog.privacy
    call.say("I lost my card")
    assert privacy.paused  # asking for card digits: the recording is silent
    call.press("4321")
    assert not privacy.paused
    keyed = call.dialog.trace[-4:]
    assert [t.text for t in keyed] == ["•"] * 4 and all(t.privacy is privacy for t in keyed)
    assert [t for s, t in call.dialog.transcript if s == "caller"][-4:] == ["[DTMF •]"] * 4
    assert keyed[-1].slots == {"card_last4": "••••4321"}  # mask: last4
    assert "ending in 4 3 2 1. Is that right?" in call.text  # the bot may read the last four back
    call.say("yes")
    assert "debit card ending in 4 3 2 1 is now blocked" in call.text
    assert call.dialog.slot_display() == {"card_last4": "••••4321"}
    assert "4321" not in "".join(t.text or "" for t in call.dialog.trace)


def test_spoken_digits_of_a_sensitive_slot_are_masked(secure_bank) -> None:
    call = Caller(secure_bank)
    call.say("I lost my card")
    call.say("it ends in 4 3 2 1")
    assert call.dialog.trace[-1].text == "it ends in ••••4321"
    assert call.actions[-1].slot == "security_code" and call.dialog.privacy.paused
    call.say("seven three nine")
    last = call.dialog.trace[-1]
    assert last.text == "••••" and last.slots == {"card_last4": "••••4321", "security_code": "••••"}
    assert call.dialog.slots["security_code"] == "739"  # the dialog has it; nobody else sees it
    assert ("caller", "••••") in call.dialog.transcript
    assert not any("739" in text or "seven" in text for _, text in call.dialog.transcript)
    assert not call.dialog.privacy.paused and "block the card ending in 4 3 2 1" in call.text


def test_words_that_are_not_numbers_stay_readable_while_masked(secure_bank) -> None:
    call = Caller(secure_bank)
    call.say("I lost my card")
    call.press("4321")
    call.say("can I speak to someone")  # over the security-code question
    assert call.dialog.trace[-1].text == "can I speak to someone"
    assert ("caller", "can I speak to someone") in call.dialog.transcript


def test_the_privacy_view_masks_what_the_record_writer_is_given(secure_bank) -> None:
    call = Caller(secure_bank)
    privacy = call.dialog.privacy
    assert privacy.caller_key("4") == "4" and privacy.caller_text("4321") == "4321"
    call.say("I lost my card")
    assert privacy.caller_key("4") == "•" and privacy.caller_text("it's 4 3 2 1 thanks") == "it's ••••4321 thanks"
    call.press("4321")
    assert privacy.caller_text("7 3 9") == "••••" and privacy.caller_key("#") == "•"


def test_a_whole_number_volunteered_up_front_is_asked_again_under_the_pause(secure_bank) -> None:
    call = Caller(secure_bank)
    call.say("my card was stolen, it ends in 8765")
    assert call.actions[-1].slot == "security_code"  # four digits: a last4 slot may take them
    other = Caller(secure_bank)
    other.say("my card was stolen, the code is 123")
    assert other.actions[-1].slot == "card_last4" and "security_code" not in other.dialog.slots


@pytest.mark.parametrize("text, last4, none", [
    ("it's 7 3 9 thanks", "it's ••••739 thanks", "it's •••• thanks"),
    ("4111 1111 and 1111 1234", "•••• and ••••1234", "•••• and ••••"),
    ("double four one two", "••••4412", "••••"),
    ("my card is 4111-1111-1111-1234.", "my card is ••••1234.", "my card is ••••."),
    ("no numbers here", "no numbers here", "no numbers here"),
])
def test_mask_numbers(text: str, last4: str, none: str) -> None:
    assert mask_numbers(text, Slot(type="digits", prompt="p", sensitive=True, mask="last4")) == last4
    assert mask_numbers(text, Slot(type="digits", prompt="p", sensitive=True)) == none


def test_mask_value() -> None:
    assert mask_value(Slot(type="digits", prompt="p", sensitive=True, mask="last4"), "4111111111111234") == "••••1234"
    assert mask_value(Slot(type="digits", prompt="p", sensitive=True), "1234") == "••••"
