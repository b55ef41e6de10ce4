"""Settings: built-in defaults, then voicebot.yaml, then VOICEBOT_* environment variables,
then command-line flags.  Embedded defaults need nothing: SQLite, the sample bank domain."""

from __future__ import annotations

import ipaddress
import json
import os
from datetime import date
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


class RelaxSettings(BaseModel):
    """After ``after_s`` waiting: agents up to ``max_penalty`` may take the call, and the
    required skills become ``skills`` when given."""

    model_config = ConfigDict(extra="forbid")

    after_s: float = Field(ge=0)
    max_penalty: int | None = Field(None, ge=0)
    skills: dict[str, int] | None = None


Band = tuple[float, float]
FRACTIONS = ("service_level", "abandon_rate")  # 0..1, not percent
LOWER_IS_WORSE = ("service_level",)


class WallboardThresholds(BaseModel):
    """Where a queue's wallboard figures turn amber, then red: ``[amber, red]``, and a figure
    beyond a value takes its colour (more waiting is worse; a lower service level is).  One left
    unset is derived from the queue's service level target (``voicebot/wallboard.py``)."""

    model_config = ConfigDict(extra="forbid")

    waiting: Band | None = Field(None, description="callers waiting")
    longest_wait_s: Band | None = Field(None, description="the longest wait now, seconds")
    asa_s: Band | None = Field(None, description="average speed of answer today, seconds")
    abandon_rate: Band | None = Field(None, description="abandoned / offered today, 0..1")
    service_level: Band | None = Field(None, description="answered within service_level_s today, 0..1; lower is worse")

    @model_validator(mode="after")
    def _amber_first(self) -> "WallboardThresholds":
        """Amber must come before red, or red would never show (every problem at once)."""
        problems = []
        for name in type(self).model_fields:
            band = getattr(self, name)
            if band is None:
                continue
            amber, red = band
            if min(band) < 0 or (name in FRACTIONS and max(band) > 1):
                allowed = "0..1, e.g. 0.8 for 80%" if name in FRACTIONS else ">= 0"
                problems.append(f"{name}: {list(band)} is out of range ({allowed})")
            elif (amber < red) if name in LOWER_IS_WORSE else (amber > red):
                order = "higher" if name in LOWER_IS_WORSE else "lower"
                problems.append(f"{name}: amber ({amber:g}) must come before red ({red:g}): give a {order} amber value")
        if problems:
            raise ValueError("; ".join(problems))
        return self


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RANGE = r"^([01][0-9]|2[0-4]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]$"


class HoursSettings(BaseModel):
    """When a queue takes callers: ``weekly`` maps ``mon``..``sun`` to ``"HH:MM-HH:MM"`` ranges in
    ``timezone`` (a day left out is closed all day); ``holidays`` are whole closed days.  A range
    may end at ``24:00``; one ending before it starts runs past midnight."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = Field("UTC", description="an IANA zone, e.g. Europe/Paris")
    weekly: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[str]] = Field(
        default_factory=dict, description="day → ranges like 08:00-12:30")
    holidays: list[date] = Field(default_factory=list, description="closed all day (YYYY-MM-DD)")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r} (an IANA name such as Europe/London)") from None
        return value

    @field_validator("weekly")
    @classmethod
    def _ranges(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        import re

        for day, ranges in value.items():
            for r in ranges:
                if not re.match(RANGE, r) or r[:5] > "24:00" or r[6:] > "24:00" or r[:5] == r[6:]:
                    raise ValueError(f"{day}: {r!r} is not a range like 08:00-17:30")
        return value


class OutboundTrunkSettings(BaseModel):
    """Where voicebot's own calls leave (callbacks): a proxy, PBX or carrier, with the digest
    credentials it challenges for and the caller ID to present."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(pattern=r"^sips?:\S+$", description="the trunk, e.g. sip:carrier.example.net:5060")
    username: str | None = None
    password: str | None = None
    caller_id: str = Field("", description="the number presented to the customer")
    max_calls: int = Field(4, ge=1, description="outbound calls at once; a callback due beyond it waits")
    ring_s: float = Field(30.0, gt=0, le=300, description="how long a customer's phone may ring")


class QueueSettings(BaseModel):
    """One ACD queue (the names follow Asterisk's app_queue where it has one)."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["longest_idle", "round_robin", "fewest_calls", "least_talk_time", "linear", "ring_all",
                      "random", "weighted_random"] = "longest_idle"
    skills: dict[str, int] = Field(default_factory=dict, description="required skill → minimum level")
    max_penalty: int | None = Field(None, ge=0, description="agents above this level wait for a relax rule")
    relax: list[RelaxSettings] = Field(default_factory=list, description="requirements that loosen as callers wait")
    service_level_s: float = Field(20.0, gt=0)
    service_level_variant: Literal["answered", "answered_and_abandoned"] = Field(
        "answered_and_abandoned", description="service level over answered calls, or over answered + abandoned"
                                              " (docs/kpis.md)")
    short_abandon_s: float = Field(0.0, ge=0, description="abandons shorter than this leave the reports; 0: none")
    service_level_target: float = Field(0.8, gt=0, lt=1, description="the share answered within service_level_s"
                                                                      " that staffing aims for")
    max_wait_s: float = Field(0.0, ge=0, description="0: no limit; else the caller leaves (EXITWITHTIMEOUT)")
    max_len: int = Field(0, ge=0, description="0: no limit; else callers beyond it are refused (FULL)")
    wrap_up_s: float = Field(10.0, ge=0)
    ring_s: float = Field(15.0, gt=0, le=300)
    join_empty: bool = Field(True, description="take callers when no agent is logged in (Asterisk joinempty)")
    leave_when_empty: bool = Field(False, description="waiting callers leave when the last agent logs out")
    announce_every_s: float = Field(30.0, ge=0, description="position and estimated wait; 0: never")
    overflow_to: str | None = Field(None, description="where callers go after overflow_after_s, at max_len, or with"
                                                      " nobody logged in: a queue, 'voicemail' or 'callback'")
    overflow_queue: str | None = Field(None, description="older name of overflow_to (a queue)")
    overflow_after_s: float = Field(0.0, ge=0)
    hours: HoursSettings | None = Field(None, description="opening hours; none: always open")
    when_closed: str = Field("announce", description="callback, voicemail, announce (say the hours, hang up) or a"
                                                     " queue name")
    callback_key: str | None = Field(None, pattern=r"^[0-9*#]$", description="a waiting caller's key for a callback")
    voicemail_key: str | None = Field(None, pattern=r"^[0-9*#]$", description="a waiting caller's key for voicemail")
    max_voicemail_s: float = Field(120.0, gt=0, le=600)
    callback_attempts: int = Field(3, ge=1, le=20, description="calls to the customer before giving up")
    callback_retry_s: float = Field(300.0, gt=0, description="between attempts")
    callback_give_up_s: float = Field(86400.0, gt=0, description="no attempt this long after the request")
    resume_abandoned_s: float = Field(0.0, ge=0, description="a caller who hung up while waiting and calls again"
                                                             " from the same number within this gets their place"
                                                             " back; 0: never (mod_callcenter's abandoned-resume)")
    missed_offers_max: int = Field(3, ge=1)
    after_wrap_up: Literal["ready", "not_ready"] = "ready"
    weight: int = 0
    default_handle_s: float = Field(180.0, gt=0)
    exit_key: str | None = Field(None, pattern=r"^[0-9*#]$", description="a key that leaves the queue for the bot")
    music: Path | None = Field(None, description="a folder of WAV files to play while callers wait")
    wallboard: WallboardThresholds = Field(default_factory=WallboardThresholds,
                                           description="[amber, red] per wallboard figure")


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    name: str = ""
    password: str = Field(min_length=1, description="a hash from `voicebot passwd`, or plain text for demos")
    queues: dict[str, int] = Field(default_factory=dict, description="queue → level (penalty); a list means level 1")
    skills: dict[str, int] = Field(default_factory=dict)
    phone: str | None = Field(None, pattern=r"^sips?:\S+$", description="a SIP URI voicebot rings for offers")

    @field_validator("queues", "skills", mode="before")
    @classmethod
    def _list_means_level_one(cls, value: Any) -> Any:
        return {name: 1 for name in value} if isinstance(value, list) else value


class UserSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    name: str = ""
    password: str = Field(min_length=1)
    role: Literal["supervisor", "admin"]


class ApiTokenSettings(BaseModel):
    """A machine's key to the API: ``token`` is a hash from `voicebot passwd` (or plain text)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    token: str = Field(min_length=1)
    role: Literal["agent", "supervisor", "admin"] = "supervisor"


QUEUE_EXITS = ("voicemail", "callback")  # what overflow_to and when_closed may name besides a queue

DISPOSITIONS = ["resolved", "follow_up", "escalated", "wrong_queue", "no_answer_needed"]
NOT_READY_REASONS = ["break", "lunch", "meeting", "training", "after_call_work"]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    domain: Path = ROOT / "domains" / "bank"
    records_db: Path = ROOT / "var" / "voicebot.sqlite3"
    recordings_dir: Path | None = Field(None, description="call recordings (stereo WAV); default: 'recordings' beside records_db")
    retention_days: float = Field(90.0, ge=0, description="recordings and transcripts older than this are deleted"
                                                          " (at start and daily); 0 keeps them")
    asr_model: str = Field("asr", description="a model role (asr, asr_base) or a CTranslate2 Whisper folder")
    asr_device: Literal["cpu", "cuda", "auto"] = "cpu"
    asr_compute_type: str = Field("int8", description="int8 on CPU; float16 on cuda")
    asr_language: str | None = "en"
    asr_trim_window: bool = Field(True, description="Whisper sees the utterance plus silence, not 30 s: 3-4x faster on"
                                                    " CPU for under half a point of word error (benchmarks/README.md)")
    asr_min_window_s: float = Field(16.0, ge=1.0, le=30.0, description="with asr_trim_window: the shortest window;"
                                                                     " longer is slower and loses fewer words")
    vad: Literal["silero", "webrtc"] = "silero"
    end_of_turn: Literal["silence", "smart_turn"] = "silence"
    end_of_turn_s: float = Field(0.25, ge=0.1, le=3.0)
    asr_guess_after_s: float | None = Field(
        0.1, ge=0.03, le=1.0, description="transcribe a caller's pause after this much silence, while waiting out"
                                          " the rest of end_of_turn_s (a confident request ends the turn there:"
                                          " the domain's nlu.early_end_threshold); null: only once the turn ends")
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
    sip_digest_algorithms: list[Literal["SHA-256", "MD5"]] = Field(
        default_factory=lambda: ["SHA-256", "MD5"], min_length=1,
        description="digest algorithms offered to trunks with credentials, strongest first; [SHA-256] refuses MD5")
    sip_transfer_targets: dict[str, SipTransferTarget] = Field(
        default_factory=dict, description="queue → SIP URI or {uri, method, ring_s}: transfers to these queues leave by SIP")
    sip_max_setups_per_s: float = Field(10.0, gt=0, description="INVITEs accepted per second; more get 503")
    sip_provisional: Literal["180", "183", "none"] = "180"
    sip_answer_after_s: float = Field(0.0, ge=0, le=30, description="ring before answering")
    queues: dict[str, QueueSettings] = Field(default_factory=dict,
                                             description="ACD queues; a queue the domain names but this omits gets defaults")
    agents: list[AgentSettings] = Field(default_factory=list)
    users: list[UserSettings] = Field(default_factory=list, description="supervisors and admins")
    api_tokens: list[ApiTokenSettings] = Field(default_factory=list)
    dispositions: list[str] = Field(default_factory=lambda: list(DISPOSITIONS))
    not_ready_reasons: list[str] = Field(default_factory=lambda: list(NOT_READY_REASONS))
    music_on_hold: Path | None = Field(None, description="WAV folder; default: Debian's asterisk-moh-opsound-wav")
    secret_key: str | None = Field(None, description="signs sessions and context links; default: random per start")
    session_hours: float = Field(12.0, gt=0)
    context_link_s: float = Field(3600.0, gt=0, description="how long a SIP transfer's context link stays valid")
    public_url: str | None = Field(None, description="how agents and PBXs reach this server (context links)")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    sip_outbound: OutboundTrunkSettings | None = Field(None, description="the trunk for callbacks")
    fcr_days: int = Field(7, ge=1, le=365, description="first-contact resolution: no call from the same number"
                                                      " about the same intent within this many days")


    @model_validator(mode="after")
    def _acd_names(self) -> "Settings":
        """Every name an agent or queue refers to exists; ids are unique (all problems at once)."""
        problems: list[str] = []
        known = set(self.queues)
        for name, queue in self.queues.items():
            overflow_field = "overflow_to"
            if queue.overflow_queue is not None and queue.overflow_to is None:
                queue.overflow_to, overflow_field = queue.overflow_queue, "overflow_queue"
            for field, target in ((overflow_field, queue.overflow_to), ("when_closed", queue.when_closed)):
                if target is None or target in QUEUE_EXITS or (field == "when_closed" and target == "announce"):
                    continue
                if target not in known:
                    problems.append(f"queues.{name}.{field}: no queue {target!r}{_did_you_mean(target, known)}"
                                    f" (or one of {', '.join(QUEUE_EXITS)}{', announce' if field == 'when_closed' else ''})")
            uses_trunk = "callback" in (queue.overflow_to, queue.when_closed) or queue.callback_key is not None
            if uses_trunk and self.sip_outbound is None:
                problems.append(f"queues.{name}: callbacks need sip_outbound (the trunk they are placed through)")
            keys = [k for k in (queue.exit_key, queue.callback_key, queue.voicemail_key) if k is not None]
            if len(keys) != len(set(keys)):
                problems.append(f"queues.{name}: exit_key, callback_key and voicemail_key must differ")
        seen: set[str] = set()
        for i, person in enumerate([*self.agents, *self.users]):
            kind = "agents" if i < len(self.agents) else "users"
            if person.id in seen:
                problems.append(f"{kind}: id {person.id!r} is used twice")
            seen.add(person.id)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("sip_transfer_targets", mode="before")
    @classmethod
    def _uri_alone(cls, value: Any) -> Any:
        """A bare URI is a REFER target: ``general: sip:queue@pbx``."""
        if isinstance(value, dict):
            return {queue: {"uri": t} if isinstance(t, str) else t for queue, t in value.items()}
        return value


def _did_you_mean(name: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class SettingsError(Exception):
    pass


SAMPLE_SETTINGS = Path(__file__).resolve().parent / "defaults" / "settings.yaml"


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """``path``, else ./voicebot.yaml, else the embedded sample contact centre (demo queues and
    agents for the sample domain), so `make run` is a whole small contact centre."""
    data: dict[str, Any] = {}
    path = path or (Path("voicebot.yaml") if Path("voicebot.yaml").exists() else SAMPLE_SETTINGS)
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
