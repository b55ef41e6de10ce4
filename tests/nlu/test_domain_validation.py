"""Broken domains are refused whole, with errors a designer can act on (file:line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.nlu.domain import load_domain_spec
from voicebot.nlu.yamlsource import DomainError, parse_yaml


def line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def problems(root: Path) -> list[str]:
    with pytest.raises(DomainError) as exc:
        load_domain_spec(root)
    return [str(p) for p in exc.value.problems]


def test_bank_domain_is_valid(bank_copy: Path) -> None:
    spec = load_domain_spec(bank_copy)
    assert set(spec.intents) == {"check_balance", "recent_transactions", "opening_hours", "lost_card",
                                 "make_payment", "dispute_charge", "speak_to_agent", "goodbye"}
    assert all(len(i.examples) >= 25 for i in spec.intents.values())


def test_typo_in_intent_name_of_flow(bank_copy: Path) -> None:
    flows = bank_copy / "flows.yaml"
    edit(flows, "  check_balance:\n", "  chek_balance:\n")
    found = problems(bank_copy)
    line = line_of(flows, "chek_balance:")
    assert f"{flows}:{line}: flow 'chek_balance' is not an intent; did you mean 'check_balance'?" in found
    assert any("intent 'check_balance' has no flow" in p and "intents.yaml:" in p for p in found)


def test_typo_in_menu_intent(bank_copy: Path) -> None:
    domain = bank_copy / "domain.yaml"
    edit(domain, '"2": recent_transactions', '"2": recent_transaction')
    line = line_of(domain, '"2": recent_transaction')
    assert any(p.startswith(f"{domain}:{line}:") and "unknown intent 'recent_transaction'" in p
               and "did you mean 'recent_transactions'" in p for p in problems(bank_copy))


def test_flow_references_missing_slot(bank_copy: Path) -> None:
    flows = bank_copy / "flows.yaml"
    edit(flows, "- ask: card_last4", "- ask: card_last_four")
    line = line_of(flows, "- ask: card_last_four")
    assert f"{flows}:{line}: step asks for unknown slot 'card_last_four'; did you mean 'card_last4'?" in problems(bank_copy)


def test_prompt_uses_unknown_slot(bank_copy: Path) -> None:
    prompts = bank_copy / "prompts.yaml"
    edit(prompts, "ending in {account_last4}.", "ending in {acount_last4}.")
    line = line_of(prompts, "{acount_last4}")
    assert any(p.startswith(f"{prompts}:{line}:") and "{acount_last4}" in p for p in problems(bank_copy))


def test_duplicate_example_across_intents(bank_copy: Path) -> None:
    intents = bank_copy / "intents.yaml"
    edit(intents, "      - lost card\n", "      - check my balance\n")
    lines = [n for n, l in enumerate(intents.read_text().splitlines(), 1) if l.strip() == "- check my balance"]
    assert len(lines) == 2
    assert (f"{intents}:{lines[1]}: duplicate example 'check my balance' "
            f"(also under intent 'check_balance', line {lines[0]})") in problems(bank_copy)


def test_duplicate_example_within_intent(bank_copy: Path) -> None:
    intents = bank_copy / "intents.yaml"
    edit(intents, "      - balance please\n", "      - Check  my balance\n")
    assert any("duplicate example 'Check  my balance' (again" in p for p in problems(bank_copy))


def test_duplicate_key_is_an_error_not_a_silent_overwrite(bank_copy: Path) -> None:
    prompts = bank_copy / "prompts.yaml"
    text = prompts.read_text() + "  goodbye: Bye for now.\n"
    prompts.write_text(text)
    last = len(text.splitlines())
    first = line_of(prompts, "  goodbye:")
    assert f"{prompts}:{last}: duplicate key 'goodbye' (first at line {first})" in problems(bank_copy)


def test_bad_yaml_syntax(bank_copy: Path) -> None:
    slots = bank_copy / "slots.yaml"
    edit(slots, "    type: amount\n", "    type: amount\n   min: [1\n")
    found = problems(bank_copy)
    assert len(found) == 1
    assert found[0].startswith(f"{slots}:") and "invalid YAML" in found[0]
    assert int(found[0].split(":")[1]) >= line_of(slots, "min: [1")


def test_unknown_field_and_wrong_type(bank_copy: Path) -> None:
    slots = bank_copy / "slots.yaml"
    edit(slots, "    prompt: ask_payment_amount", "    promt: ask_payment_amount")
    edit(slots, "    max: 5000", "    max: lots")
    found = problems(bank_copy)
    assert any(f"{slots}:{line_of(slots, 'promt:')}:" in p and "promt" in p for p in found)
    assert any(f"{slots}:{line_of(slots, 'max: lots')}:" in p and "max" in p for p in found)


def test_step_with_two_actions(bank_copy: Path) -> None:
    flows = bank_copy / "flows.yaml"
    edit(flows, "      - say: opening_hours", "      - say: opening_hours\n        hangup: done")
    line = line_of(flows, "- say: opening_hours")
    assert any(p.startswith(f"{flows}:{line}:") and "exactly one of" in p for p in problems(bank_copy))


def test_missing_required_prompt_and_file(bank_copy: Path) -> None:
    edit(bank_copy / "prompts.yaml", "  goodbye: Thank", "  good_bye: Thank")
    (bank_copy / "intents.yaml").unlink()
    found = problems(bank_copy)
    assert any("intents.yaml: required file is missing" in p for p in found)


def test_result_field_before_lookup(bank_copy: Path) -> None:
    flows = bank_copy / "flows.yaml"
    edit(flows, "    steps:\n      - ask: account_last4\n      - lookup: get_balance",
         "    steps:\n      - ask: account_last4\n      - say: balance_is\n      - lookup: get_balance")
    line = line_of(flows, "- say: balance_is")
    assert any(p.startswith(f"{flows}:{line}:") and "before any lookup" in p for p in problems(bank_copy))


def test_every_problem_is_reported_at_once(bank_copy: Path) -> None:
    edit(bank_copy / "flows.yaml", "- ask: card_last4", "- ask: nope")
    edit(bank_copy / "domain.yaml", '"5": opening_hours', '"5": opening_hour')
    assert len(problems(bank_copy)) >= 2


def test_parse_yaml_lines_by_path() -> None:
    doc = parse_yaml("a:\n  b:\n    - x\n    - y\n", "f.yaml")
    assert doc.line_of(("a", "b", 1)) == 4
    assert doc.line_of(("a", "b", 1, "deeper")) == 4


# ----------------------------------------------------------------------------- recording and sensitive slots


def test_a_prompt_may_not_say_a_fully_masked_slot_aloud(bank_copy: Path) -> None:
    slots, prompts = bank_copy / "slots.yaml", bank_copy / "prompts.yaml"
    edit(slots, "    mask: last4", "    mask: none")
    found = problems(bank_copy)
    for name in ("confirm_block_card", "card_not_found", "card_blocked"):
        line = line_of(prompts, f"  {name}:")
        assert any(p.startswith(f"{prompts}:{line}: prompt {name!r} would say sensitive slot {{card_last4}} aloud")
                   for p in found), found


def test_mask_needs_a_sensitive_digits_slot(bank_copy: Path) -> None:
    slots = bank_copy / "slots.yaml"
    edit(slots, "    sensitive: true", "    sensitive: false")
    edit(slots, "    max: 5000\n", "    max: 5000\n    sensitive: true\n    mask: last4\n")
    found = problems(bank_copy)
    card = line_of(slots, "  card_last4:")
    amount = line_of(slots, "  payment_amount:")
    assert any(p.startswith(f"{slots}:{card}:") and "'mask' applies to sensitive slots" in p for p in found), found
    assert any(p.startswith(f"{slots}:{amount}:") and "'mask: last4' needs a digits slot" in p for p in found), found


def test_recording_settings_are_checked_against_prompts_and_keys(bank_copy: Path) -> None:
    domain = bank_copy / "domain.yaml"
    edit(domain, "consent_prompt: recording_consent", "consent_prompt: recording_consnet")
    edit(domain, 'opt_out_dtmf: "9"', 'opt_out_dtmf: "3"')
    found = problems(bank_copy)
    assert (f"{domain}:{line_of(domain, 'consent_prompt:')}: recording.consent_prompt: unknown prompt "
            "'recording_consnet'; did you mean 'recording_consent'?") in found
    assert f"{domain}:{line_of(domain, 'opt_out_dtmf:')}: recording.opt_out_dtmf '3' is already a menu key" in found


@pytest.mark.parametrize("key, why", [('"0"', "is already rules.agent_dtmf"), ('"#"', "is not a single digit key"),
                                      ('"1"', "is already a menu key")])
def test_the_opt_out_key_is_one_nothing_else_uses(bank_copy: Path, key: str, why: str) -> None:
    domain = bank_copy / "domain.yaml"
    edit(domain, 'opt_out_dtmf: "9"', f"opt_out_dtmf: {key}")
    assert any(p.startswith(f"{domain}:{line_of(domain, 'opt_out_dtmf:')}:") and why in p for p in problems(bank_copy))


def test_a_recorded_domain_lets_callers_opt_out(bank_copy: Path) -> None:
    domain = bank_copy / "domain.yaml"
    text = domain.read_text()
    start = text.index("  opt_out_dtmf:")
    end = text.index("  opted_out_prompt:")
    domain.write_text(text[:start] + "  opt_out_dtmf: null\n  opt_out_phrases: []\n" + text[end:])
    assert any(p.startswith(f"{domain}:{line_of(domain, 'recording:')}:") and "needs a way to opt out" in p
               for p in problems(bank_copy))


def test_the_bank_records_and_masks_its_card_digits(bank_copy: Path) -> None:
    spec = load_domain_spec(bank_copy)
    assert spec.settings.recording.record and spec.settings.recording.opt_out_dtmf == "9"
    assert spec.slots["card_last4"].sensitive and spec.slots["card_last4"].mask == "last4"
    assert not spec.slots["account_last4"].sensitive
