"""Scripted conversations through every bank flow, on the real classifier and the fake bank."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from voicebot.backends import FakeBank
from voicebot.nlu.dialog import (Ask, CallerHungUp, CallStarted, Dialog, DialogContext, DtmfPressed, Hangup,
                                 Lookup, LookupResult, NoInput, Say, Transfer, TransferFailed, UserSaid)
from voicebot.textchat import turn


class Call:
    """A caller on the text channel: says things, presses keys, stays silent."""

    def __init__(self, domain, bank: FakeBank | None = None) -> None:
        self.dialog = Dialog(domain, DialogContext(caller_number="+15551234567", today=date(2026, 11, 25)))
        self.bank = bank or FakeBank(today=date(2026, 11, 25))
        self.actions = self._run(CallStarted())

    def _run(self, event) -> list:
        self.actions = asyncio.run(turn(self.dialog, self.bank, event))
        return self.actions

    def say(self, text: str) -> list:
        return self._run(UserSaid(text))

    def press(self, keys: str) -> list:
        out = []
        for key in keys:
            out += self._run(DtmfPressed(key))
        self.actions = out
        return out

    def silence(self) -> list:
        return self._run(NoInput())

    @property
    def text(self) -> str:
        return " ".join(a.text for a in self.actions if isinstance(a, (Say, Ask)))

    @property
    def transfer(self) -> Transfer | None:
        return next((a for a in self.actions if isinstance(a, Transfer)), None)

    @property
    def hung_up(self) -> bool:
        return any(isinstance(a, Hangup) for a in self.actions)


def test_greeting_and_menu(bank) -> None:
    call = Call(bank)
    assert "Thank you for calling Example Bank" in call.text
    assert isinstance(call.actions[-1], Ask) and call.actions[-1].expect == "intent"
    assert call.dialog.trace[0].rule == "greeting"


def test_balance_by_speech(bank) -> None:
    call = Call(bank)
    call.say("what's my balance")
    ask = call.actions[-1]
    assert isinstance(ask, Ask) and ask.slot == "account_last4" and ask.expect == "digits" and ask.max_digits == 4
    assert call.dialog.trace[-1].intent == "check_balance" and call.dialog.trace[-1].rule == "intent:check_balance"
    call.say("four five six seven")
    assert "balance is $2,450.75, in your checking account ending in 4 5 6 7" in call.text
    assert "anything else" in call.text
    call.say("no thanks, that's all")
    assert call.hung_up and call.dialog.ended


def test_balance_by_keyed_digits(bank) -> None:
    call = Call(bank)
    call.say("how much money do I have in my account")
    call.press("1234")
    assert "balance is $10,200.00, in your savings account ending in 1 2 3 4" in call.text


def test_balance_unknown_account_transfers(bank) -> None:
    call = Call(bank)
    call.say("check my balance")
    call.say("9 9 9 9")
    assert "couldn't find an account ending in 9 9 9 9" in call.text
    assert call.transfer == Transfer("general", 1, (), "account_not_found")


def test_recent_transactions_with_digits_in_first_utterance(bank) -> None:
    call = Call(bank)
    call.say("read me the recent transactions on account 4567")
    assert "Corner Grocery" in call.text and "City Electric" in call.text
    assert call.dialog.trace[0 - 2].slots["account_last4"] == "4 5 6 7"


def test_opening_hours(bank) -> None:
    call = Call(bank)
    call.say("what time do you close on saturday")
    assert "Saturday from 9 a.m. to 1 p.m." in call.text
    call.say("yes")
    assert "What can I help you with?" in call.text
    call.say("goodbye")
    assert call.hung_up


def test_lost_card_blocked_in_self_service(bank) -> None:
    fake = FakeBank(today=date(2026, 11, 25))
    call = Call(bank, fake)
    call.say("I lost my card")
    call.say("it ends in four three two one")
    assert "block the card ending in 4 3 2 1. Is that right?" in call.text
    assert not fake.cards["4321"].blocked
    call.say("yes please")
    assert "debit card ending in 4 3 2 1 is now blocked" in call.text
    assert fake.cards["4321"].blocked
    assert call.transfer is None


def test_lost_card_declined_confirmation_blocks_nothing(bank) -> None:
    fake = FakeBank()
    call = Call(bank, fake)
    call.say("my card was stolen, it ends in 8765")
    assert "ending in 8 7 6 5. Is that right?" in call.text  # digits taken from the first sentence
    call.say("no")
    assert "have not blocked" in call.text and not fake.cards["8765"].blocked


def test_lost_card_unknown_card_goes_to_cards_queue(bank) -> None:
    call = Call(bank)
    call.say("please block my card")
    call.press("1111")
    call.press("1")  # 1 = yes on a confirmation
    assert call.transfer == Transfer("cards", 5, ("cards",), "card_not_found")


def test_make_payment_by_speech(bank) -> None:
    fake = FakeBank()
    call = Call(bank, fake)
    call.say("I want to pay my credit card bill")
    assert call.actions[-1].slot == "payment_amount"
    call.say("twenty five dollars fifty")
    assert call.actions[-1].slot == "from_account"
    call.say("from my savings")
    assert "$25.50 from your savings account" in call.text
    call.say("yes go ahead")
    assert "payment of $25.50 is on its way" in call.text
    assert fake.payments == [{"amount": "25.50", "from": "savings", "reference": "PAY-1001"}]


def test_make_payment_by_dtmf_menu(bank) -> None:
    fake = FakeBank()
    call = Call(bank, fake)
    call.press("4")
    call.press("100#")
    call.press("1")
    assert "$100.00 from your checking account" in call.text
    call.press("1")
    assert fake.payments and fake.payments[0]["amount"] == "100.00"


def test_make_payment_cancelled(bank) -> None:
    fake = FakeBank()
    call = Call(bank, fake)
    call.say("pay 50 dollars to my card from checking")
    assert "$50.00 from your checking account" in call.text  # amount and account from one sentence
    call.say("no")
    assert "cancelled" in call.text and not fake.payments


def test_make_payment_insufficient_funds_goes_to_payments(bank) -> None:
    call = Call(bank)
    call.say("make a payment")
    call.say("five thousand dollars")
    call.say("checking")
    call.say("yes")
    assert "couldn't make that payment" in call.text
    assert call.transfer == Transfer("payments", 3, ("payments",), "payment_failed")


def test_dispute_goes_to_disputes_queue(bank) -> None:
    call = Call(bank)
    call.say("there's a charge on my card I don't recognize")
    assert "disputes team" in call.text
    assert call.transfer == Transfer("disputes", 5, ("disputes",), "dispute_charge")
    assert call.dialog.ended


def test_speak_to_agent(bank) -> None:
    call = Call(bank)
    call.say("can I talk to a real person")
    assert call.transfer == Transfer("general", 0, (), "caller_request")


def test_agent_from_the_middle_of_a_flow(bank) -> None:
    call = Call(bank)
    call.say("what's my balance")
    call.say("I want to speak to a representative")
    assert call.transfer is not None and call.transfer.reason == "caller_request"
    assert call.dialog.trace[-1].rule == "global:agent_request"


def test_zero_reaches_an_agent_from_the_menu(bank) -> None:
    call = Call(bank)
    call.press("0")
    assert call.transfer == Transfer("general", 0, (), "caller_request")


def test_lone_zero_during_digit_entry_reaches_an_agent(bank) -> None:
    call = Call(bank)
    call.say("my balance please")
    call.press("0")
    assert call.transfer is None  # could be the first digit of 0123
    call.silence()  # the inter-digit timeout ends the entry: a lone 0 means an agent
    assert call.transfer is not None and call.transfer.reason == "caller_request"


def test_two_misunderstandings_transfer(bank) -> None:
    call = Call(bank)
    call.say("what's the weather like in paris")
    assert "not something I can help with" in call.text and call.transfer is None
    call.say("sing me a song about rainbows")
    assert call.transfer == Transfer("general", 1, (), "not_understood")


def test_misunderstanding_count_resets_after_success(bank) -> None:
    call = Call(bank)
    call.say("what's my balance")
    call.say("banana")
    assert "didn't catch that" in call.text and "last four digits" in call.text  # re-asked with the reprompt
    call.say("4567")
    call.say("hmm purple")
    assert call.transfer is None


def test_silence_reprompts_then_transfers(bank) -> None:
    call = Call(bank)
    call.silence()
    assert "didn't hear anything" in call.text and call.transfer is None
    call.silence()
    assert call.transfer == Transfer("general", 1, (), "no_input")


def test_goodbye_ends_the_call(bank) -> None:
    call = Call(bank)
    call.say("bye")
    assert call.hung_up and "Goodbye" in call.text


def test_spoken_menu_choice(bank) -> None:
    call = Call(bank)
    call.say("option five")
    assert "Our branches are open" in call.text


def test_switching_request_mid_flow(bank) -> None:
    call = Call(bank)
    call.say("what's my balance")
    call.say("actually what are your opening hours")
    assert "Our branches are open" in call.text
    assert call.dialog.trace[-1].rule.startswith("flow_switch:")


def test_failed_transfer_comes_back_to_the_bot_with_what_was_said(bank) -> None:
    call = Call(bank)
    call.say("what's my balance")
    call.press("4567")
    call.press("0")
    assert call.transfer is not None and call.dialog.ended
    call._run(TransferFailed("general", 486))
    assert "nobody from our team could take your call" in call.text and "anything else" in call.text
    assert not call.dialog.ended and call.dialog.transfer is None
    assert call.dialog.trace[-1].rule == "transfer_failed:general"
    assert call.dialog.slots["account_last4"] == "4567"  # nothing the caller said is lost
    call.press("#")
    assert call.hung_up  # and the call goes on as after any other request
    call = Call(bank)
    call.press("0")
    call._run(TransferFailed("general", 486))
    call.say("let me talk to a person")  # asking again tries again
    assert call.transfer == Transfer("general", 0, (), "caller_request")


def test_transfer_failed_without_a_transfer_is_ignored(bank) -> None:
    call = Call(bank)
    call.say("bye")
    assert call._run(TransferFailed("general")) == []
    assert call.dialog.trace[-1].rule == "ignored:call_over"


def test_events_after_the_call_ended_are_ignored(bank) -> None:
    call = Call(bank)
    call.say("bye")
    assert call.say("hello?") == []
    assert call.dialog.trace[-1].rule == "ignored:call_over"


def test_caller_hang_up_is_recorded(bank) -> None:
    call = Call(bank)
    call._run(CallerHungUp())
    assert call.dialog.ended and call.dialog.trace[-1].rule == "caller_hung_up"


def test_lookup_failure_without_handler_uses_global_rule(bank) -> None:
    dialog = Dialog(bank)
    dialog.handle(CallStarted())
    actions = dialog.handle(UserSaid("what's my balance"))
    actions = dialog.handle(UserSaid("4567"))
    assert actions == [Lookup("get_balance", {"account": "4567"})]
    actions = dialog.handle(LookupResult("get_balance", False, {}, "backend_unavailable"))
    # check_balance has on_failure, so its own handler runs
    assert any(isinstance(a, Transfer) and a.reason == "account_not_found" for a in actions)


def test_every_turn_is_traced(bank) -> None:
    call = Call(bank)
    call.say("what's my balance")
    call.press("4567")
    rules = [t.rule for t in call.dialog.trace]
    assert rules[0] == "greeting" and "intent:check_balance" in rules
    assert "slot_filled:dtmf:account_last4" in rules and "lookup_ok:get_balance" in rules
    said = [t for t in call.dialog.trace if t.event == "UserSaid"][0]
    assert said.intent == "check_balance" and said.confidence is not None and said.confidence > 0.5
    assert ("caller", "what's my balance") in call.dialog.transcript


@pytest.mark.parametrize("digit", ["A", "", "12"])
def test_invalid_dtmf_is_ignored(bank, digit: str) -> None:
    dialog = Dialog(bank)
    dialog.handle(CallStarted())
    assert dialog.handle(DtmfPressed(digit)) == []
    assert dialog.trace[-1].rule == "ignored:invalid_dtmf"


def test_pound_ends_and_star_repeats_the_menu_after_a_request(bank) -> None:
    call = Call(bank)
    call.press("5")
    assert "Our branches are open" in call.text and "pound to end" in call.text
    call.press("*")
    assert "press 1 for your balance" in call.text and call.dialog.trace[-1].rule == "menu:repeat"
    call.press("5")
    call.press("#")
    assert call.hung_up and call.dialog.trace[-1].rule == "anything_else:dtmf_end"
