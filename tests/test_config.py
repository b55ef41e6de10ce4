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
