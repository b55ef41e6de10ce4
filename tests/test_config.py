from pathlib import Path

import pytest

from voicebot.config import SettingsError, load_settings


def test_defaults_file_env_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(None).port == 8080
    cfg = tmp_path / "voicebot.yaml"
    cfg.write_text("port: 9000\nasr_model: asr_base\n")
    monkeypatch.setenv("VOICEBOT_VAD", "webrtc")
    s = load_settings(cfg, port=9100)
    assert (s.port, s.asr_model, s.vad) == (9100, "asr_base", "webrtc")


@pytest.mark.parametrize("text", ["port: not-a-number\n", "unknown_setting: 1\n", "- a list\n", "port: [\n"])
def test_bad_settings_are_clear_errors(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "voicebot.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError):
        load_settings(cfg)


def test_transfer_targets_take_a_uri_or_a_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_SIP_TRANSFER_TARGETS",
                       '{"general": "sip:queue@pbx.example", "cards": {"uri": "sip:1000@10.0.0.9", "method": "bridge"}}')
    targets = load_settings(None).sip_transfer_targets
    assert (targets["general"].uri, targets["general"].method) == ("sip:queue@pbx.example", "refer")
    assert (targets["cards"].method, targets["cards"].ring_s) == ("bridge", 30.0)


@pytest.mark.parametrize("target", ['"http://pbx/queue"', '{"uri": "sip:a@b", "method": "fax"}', '{"uri": "sip:a@b", "ring_s": 0}'])
def test_bad_transfer_targets_are_refused(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    monkeypatch.setenv("VOICEBOT_SIP_TRANSFER_TARGETS", '{"general": %s}' % target)
    with pytest.raises(SettingsError, match="sip_transfer_targets"):
        load_settings(None)


def test_sip_trunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_SIP_TRUNKS", '[{"name": "carrier", "networks": ["203.0.113.0/24"], '
                                              '"credentials": {"c1": "pw"}}, {"name": "pbx", "networks": ["10.0.0.0/8"]}]')
    trunks = load_settings(None).sip_trunks
    assert [(t.name, t.networks, t.credentials) for t in trunks] == [
        ("carrier", ["203.0.113.0/24"], {"c1": "pw"}), ("pbx", ["10.0.0.0/8"], {})]


@pytest.mark.parametrize("trunk", ['{"name": "x"}', '{"name": "x", "networks": ["10.0.0.300/8"]}',
                                   '{"name": "bad name", "networks": ["10.0.0.0/8"]}'])
def test_bad_trunks_are_refused(monkeypatch: pytest.MonkeyPatch, trunk: str) -> None:
    monkeypatch.setenv("VOICEBOT_SIP_TRUNKS", f"[{trunk}]")
    with pytest.raises(SettingsError, match="sip_trunks"):
        load_settings(None)


def test_queue_and_agent_names_are_checked_with_a_suggestion(bank) -> None:
    import pytest

    from voicebot.config import Settings
    from voicebot.server import domain_queues, unknown_queues

    assert domain_queues(bank) == {"general", "cards", "payments", "disputes"}
    settings = Settings.model_validate({"agents": [{"id": "alice", "password": "x", "queues": ["genral", "cards"]}]})
    assert unknown_queues(settings, bank) == ["agents.alice.queues: no queue 'genral' (did you mean 'general'?)"]
    with pytest.raises(ValueError, match="did you mean 'general'"):
        Settings.model_validate({"queues": {"general": {}, "cards": {"overflow_queue": "generl"}}})
    with pytest.raises(ValueError, match="used twice"):
        Settings.model_validate({"agents": [{"id": "a", "password": "x"}], "users": [{"id": "a", "password": "y",
                                                                                       "role": "admin"}]})


def test_the_sample_contact_centre_is_the_default(tmp_path, monkeypatch) -> None:
    from voicebot.config import load_settings

    monkeypatch.chdir(tmp_path)  # no voicebot.yaml here
    settings = load_settings()
    assert set(settings.queues) == {"general", "cards", "payments", "disputes"}
    assert [a.id for a in settings.agents] == ["alice", "bob"] and settings.users[0].role == "supervisor"


def test_issue_11_settings_are_checked_with_every_problem_named() -> None:
    import pytest

    from voicebot.config import Settings

    trunk = {"uri": "sip:carrier.example.net:5060", "username": "bank", "password": "s3cret", "caller_id": "+15550100"}
    settings = Settings.model_validate({
        "sip_outbound": trunk,
        "queues": {"general": {"hours": {"timezone": "Europe/Paris", "weekly": {"mon": ["08:00-12:30", "13:30-18:00"],
                                                                                "sat": ["22:00-02:00"]},
                                         "holidays": ["2026-12-25"]},
                               "when_closed": "callback", "callback_key": "1", "voicemail_key": "2",
                               "overflow_to": "voicemail", "overflow_after_s": 120},
                   "cards": {"overflow_queue": "general", "overflow_after_s": 60}}})
    assert settings.queues["cards"].overflow_to == "general"  # the older name still works
    assert str(settings.queues["general"].hours.holidays[0]) == "2026-12-25"  # type: ignore[union-attr]
    cases = [
        ({"queues": {"q": {"hours": {"timezone": "Mars/Olympus"}}}}, "unknown timezone 'Mars/Olympus'"),
        ({"queues": {"q": {"hours": {"weekly": {"mon": ["8-17"]}}}}}, "not a range like 08:00-17:30"),
        ({"queues": {"q": {"hours": {"weekly": {"funday": ["08:00-17:00"]}}}}}, "funday"),
        ({"queues": {"q": {"when_closed": "nigth"}, "night": {}}}, "did you mean 'night'"),
        ({"queues": {"q": {"overflow_to": "voicmail"}}}, "no queue 'voicmail'"),
        ({"queues": {"q": {"callback_key": "1"}}}, "callbacks need sip_outbound"),
        ({"queues": {"q": {"exit_key": "*", "voicemail_key": "*"}}}, "must differ"),
        ({"sip_outbound": {"uri": "carrier.example.net"}}, "sip_outbound.uri"),
    ]
    for data, problem in cases:
        with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
            Settings.model_validate(data)
