"""Settings: built-in defaults, then voicebot.yaml, then VOICEBOT_* environment variables,
then command-line flags.  Embedded defaults need nothing: SQLite, the sample bank domain."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ROOT = Path(__file__).resolve().parents[1]


class SipTransferTarget(BaseModel):
    """A queue answered outside voicebot: an existing PBX/ACD queue or an agent's phone."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(pattern=r"^sips?:\S+$", description="SIP URI to transfer to")
    method: Literal["refer", "bridge"] = Field(
        "refer", description="refer: blind transfer (bridged when refused); bridge: voicebot calls and relays")
    ring_s: float = Field(30.0, gt=0, le=300, description="bridge: give up (and keep the caller) after this")


class SipTrunk(BaseModel):
    """A PBX, SBC or carrier allowed to send calls: by source network, by digest, or both."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    networks: list[str] = Field(default_factory=list, description="source networks (CIDR)")
    credentials: dict[str, str] = Field(default_factory=dict, description="digest user → password")

    @field_validator("networks")
    @classmethod
    def _cidr(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    @model_validator(mode="after")
    def _something(self) -> "SipTrunk":
        if not self.networks and not self.credentials:
            raise ValueError(f"trunk {self.name!r} needs networks, credentials or both")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    domain: Path = ROOT / "domains" / "bank"
    records_db: Path = ROOT / "var" / "voicebot.sqlite3"
    asr_model: str = Field("asr", description="a model role (asr, asr_base) or a CTranslate2 Whisper folder")
    asr_device: Literal["cpu", "cuda", "auto"] = "cpu"
    asr_compute_type: str = Field("int8", description="int8 on CPU; float16 on cuda")
    asr_language: str | None = "en"
    asr_trim_window: bool = Field(False, description="5x faster ASR on CPU for ~3 points more word errors")
    vad: Literal["silero", "webrtc"] = "silero"
    end_of_turn: Literal["silence", "smart_turn"] = "silence"
    end_of_turn_s: float = Field(0.25, ge=0.1, le=3.0)
    no_input_s: float = Field(7.0, ge=1.0, le=60.0)
    max_calls: int = Field(20, ge=1)
    sip: bool = Field(True, description="listen for SIP calls")
    sip_host: str = "127.0.0.1"
    sip_port: int = Field(5060, ge=0, le=65535)
    sip_advertised_host: str | None = Field(None, description="address for SDP/Contact behind NAT")
    sip_allowed_networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    sip_credentials: dict[str, str] = Field(default_factory=dict,
                                            description="digest user → password for callers off the allow-list")
    sip_trunks: list[SipTrunk] = Field(
        default_factory=list, description="who may call, per trunk; replaces sip_allowed_networks/sip_credentials")
    sip_tcp: bool = True
    sip_transfer_targets: dict[str, SipTransferTarget] = Field(
        default_factory=dict, description="queue → SIP URI or {uri, method, ring_s}: transfers to these queues leave by SIP")
    sip_max_setups_per_s: float = Field(10.0, gt=0, description="INVITEs accepted per second; more get 503")
    sip_provisional: Literal["180", "183", "none"] = "180"
    sip_answer_after_s: float = Field(0.0, ge=0, le=30, description="ring before answering")


    @field_validator("sip_transfer_targets", mode="before")
    @classmethod
    def _uri_alone(cls, value: Any) -> Any:
        """A bare URI is a REFER target: ``general: sip:queue@pbx``."""
        if isinstance(value, dict):
            return {queue: {"uri": t} if isinstance(t, str) else t for queue, t in value.items()}
        return value


class SettingsError(Exception):
    pass


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    data: dict[str, Any] = {}
    path = path or (Path("voicebot.yaml") if Path("voicebot.yaml").exists() else None)
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"{path}: {exc}") from None
        if not isinstance(data, dict):
            raise SettingsError(f"{path}: expected a mapping of settings")
    for name in Settings.model_fields:
        value = os.environ.get(f"VOICEBOT_{name.upper()}")
        if value is not None:
            if value.strip()[:1] in ("{", "["):  # lists and maps come as JSON in the environment
                try:
                    data[name] = json.loads(value)
                    continue
                except ValueError:
                    raise SettingsError(f"VOICEBOT_{name.upper()} is not valid JSON") from None
            data[name] = value
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(str(exc)) from None
