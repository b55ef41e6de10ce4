"""The domain a conversation designer edits: schema, loader and validation.

A domain is a folder of YAML files (``domain.yaml``, ``intents.yaml``, ``slots.yaml``,
``flows.yaml``, ``prompts.yaml``).  Loading is all-or-nothing: every problem is collected
with its file and line, and a domain with any problem is refused whole, so a half-edited
domain never reaches a caller.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voicebot.nlu.yamlsource import DomainError, PathKey, Problem, SourceDoc, load_yaml_file

OUT_OF_SCOPE = "out_of_scope"
DTMF_KEYS = set("0123456789*#")
REQUIRED_PROMPTS = (
    "greeting", "not_understood", "out_of_scope", "no_input", "anything_else", "goodbye",
    "transfer", "lookup_failed", "what_else",
)
TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- domain.yaml

class WebhookBackend(Strict):
    url: str = Field(description="POST {name, args, call} here; a JSON object comes back")
    timeout_s: float = Field(3.0, gt=0, le=30)
    headers: dict[str, str] = {}


class BackendSpec(Strict):
    builtin: Literal["fake_bank"] | None = None
    webhook: WebhookBackend | None = None

    @model_validator(mode="after")
    def _one(self) -> "BackendSpec":
        if (self.builtin is None) == (self.webhook is None):
            raise ValueError("name exactly one of 'builtin' or 'webhook'")
        return self


class NluSettings(Strict):
    confidence_threshold: float = Field(0.45, ge=0, le=1, description="below this an utterance is out_of_scope")
    switch_threshold: float = Field(0.75, ge=0, le=1, description="confidence needed to leave a flow mid-way")
    early_end_threshold: float | None = Field(
        0.8, ge=0, le=1, description="a request this confident ends the caller's turn without waiting out the"
                                     " silence (never a fragment or a number); null: always wait")


class TransferSpec(Strict):
    queue: str
    priority: int = Field(0, ge=0, le=10)
    skills: list[str] = []
    reason: str


class Rules(Strict):
    agent_intent: str = "speak_to_agent"
    agent_dtmf: str = "0"
    agent_transfer: TransferSpec = TransferSpec(queue="general", reason="caller_request")
    goodbye_intent: str = "goodbye"
    max_misunderstandings: int = Field(2, ge=1, le=5)
    not_understood_transfer: TransferSpec = TransferSpec(queue="general", reason="not_understood")
    max_no_input: int = Field(2, ge=1, le=5)
    no_input_transfer: TransferSpec = TransferSpec(queue="general", reason="no_input")
    lookup_failed_transfer: TransferSpec = TransferSpec(queue="general", reason="backend_error")
    after_flow: Literal["anything_else", "hangup"] = "anything_else"


class Menu(Strict):
    prompt: str
    options: dict[str, str] = Field(description="DTMF key → intent")


OPT_OUT_PHRASES = ["don't record", "do not record", "stop recording", "stop the recording", "no recording",
                   "not be recorded", "not to be recorded", "don't want to be recorded"]


class RecordingSettings(Strict):
    """Whether this domain's voice calls are recorded, how the caller is told, and how they
    say no.  A caller who opts out is not recorded from then on, and what was recorded of the
    call before is deleted: they never consented to it."""

    record: bool = Field(False, description="record voice calls (stereo WAV: caller left, bot and agent right)")
    consent_prompt: str = Field("recording_consent", description="said after the greeting on every recorded call")
    opt_out_dtmf: str | None = Field("9", description="the key that stops (and deletes) the recording; null: none")
    opt_out_phrases: list[Annotated[str, Field(min_length=2)]] = Field(
        default_factory=lambda: list(OPT_OUT_PHRASES), description="words that stop (and delete) the recording")
    opted_out_prompt: str | None = Field(None, description="said when the caller opts out (default: a built-in line)")


SURVEY_PROMPT = ("Before you go: how would you rate this call, from 1 for poor to 5 for excellent?"
                 " Press or say a number.")
SURVEY_REPROMPT = "Sorry, I didn't catch that. Please press or say a number from 1 to 5."
SURVEY_THANKS = "Thank you for your feedback. Goodbye."


class SurveySettings(Strict):
    """The post-call survey (CSAT): once the conversation is over and the caller is still on
    the line, ask for a rating 1-5 by key or speech.  Off unless a domain opts in: it makes
    every call longer.  The texts are said as written (no template fields)."""

    enabled: bool = False
    after: list[Literal["agent", "bot"]] = Field(default_factory=lambda: ["agent", "bot"], min_length=1,
                                                 description="which endings get the survey: an agent's, the bot's")
    prompt: str = Field(SURVEY_PROMPT, min_length=1)
    reprompt: str = Field(SURVEY_REPROMPT, min_length=1, description="said after no answer or one that is not 1-5")
    thanks: str = Field(SURVEY_THANKS, min_length=1)
    timeout_s: float = Field(6.0, gt=0, le=30, description="silence after the prompt before asking again")
    retries: int = Field(1, ge=0, le=3, description="how many times to ask again")

    @model_validator(mode="after")
    def _distinct(self) -> "SurveySettings":
        if len(set(self.after)) != len(self.after):
            raise ValueError("'after' names an ending twice")
        return self

    def offered_after(self, ending: Literal["agent", "bot"]) -> bool:
        """Whether a conversation that ``ending`` closed gets the survey."""
        return self.enabled and ending in self.after


class DomainSettings(Strict):
    name: str
    language: str = "en"
    backend: BackendSpec
    nlu: NluSettings = NluSettings()
    rules: Rules = Rules()
    menu: Menu | None = None
    recording: RecordingSettings = RecordingSettings()
    survey: SurveySettings = SurveySettings()


# --------------------------------------------------------------------------- intents.yaml

class Intent(Strict):
    description: str = ""
    examples: list[Annotated[str, Field(min_length=1)]] = Field(min_length=3)


class IntentsFile(Strict):
    intents: dict[str, Intent]
    out_of_scope: list[str] = Field([], description="things callers say that the bot must not handle")


# --------------------------------------------------------------------------- slots.yaml

class ChoiceOption(Strict):
    say: list[str] = Field(min_length=1, description="words that pick this option")
    dtmf: str | None = None
    label: str | None = None


class Slot(Strict):
    type: Literal["digits", "amount", "date", "yes_no", "choice"]
    prompt: str
    reprompt: str | None = None
    min_length: int = Field(1, ge=1)
    max_length: int = Field(20, ge=1)
    min: float | None = None
    max: float | None = None
    options: dict[str, ChoiceOption] = {}
    sensitive: bool = Field(False, description="card number, CVV, PIN: the recording pauses while it is asked"
                                                " for, and records, logs and the agent see it masked")
    mask: Literal["none", "last4"] = Field("none", description="last4: a sensitive value may show its last four"
                                                               " digits (••••1234) and be read back as them")

    @model_validator(mode="after")
    def _consistent(self) -> "Slot":
        if self.mask == "last4" and not self.sensitive:
            raise ValueError("'mask' applies to sensitive slots: add 'sensitive: true'")
        if self.mask == "last4" and self.type != "digits":
            raise ValueError(f"'mask: last4' needs a digits slot, not {self.type}")
        if self.type == "choice" and not self.options:
            raise ValueError("a choice slot needs 'options'")
        if self.type != "choice" and self.options:
            raise ValueError(f"'options' only apply to choice slots, not {self.type}")
        if self.min_length > self.max_length:
            raise ValueError("min_length is larger than max_length")
        return self


class SlotsFile(Strict):
    slots: dict[str, Slot] = {}


# --------------------------------------------------------------------------- flows.yaml

STEP_KINDS = ("say", "ask", "confirm", "lookup", "transfer", "hangup", "goto")


class Step(Strict):
    say: str | None = None
    ask: str | None = None
    confirm: str | None = None
    on_no: list["Step"] = []
    lookup: str | None = None
    args: dict[str, str] = {}
    on_failure: list["Step"] = []
    transfer: TransferSpec | None = None
    hangup: str | None = None
    goto: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Step":
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a step does exactly one of {', '.join(STEP_KINDS)}; this one has {kinds or 'none'}")
        if self.on_no and self.confirm is None:
            raise ValueError("'on_no' belongs to a 'confirm' step")
        if (self.args or self.on_failure) and self.lookup is None:
            raise ValueError("'args' and 'on_failure' belong to a 'lookup' step")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)


class Flow(Strict):
    description: str = ""
    steps: list[Step] = Field(min_length=1)


class FlowsFile(Strict):
    flows: dict[str, Flow]


class PromptsFile(Strict):
    prompts: dict[str, Annotated[str, Field(min_length=1)]]


# --------------------------------------------------------------------------- the domain

class DomainSpec(BaseModel):
    """Everything a Dialog needs, validated and cross-checked."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    root: Path
    settings: DomainSettings
    intents: dict[str, Intent]
    out_of_scope_examples: list[str]
    slots: dict[str, Slot]
    flows: dict[str, Flow]
    prompts: dict[str, str]

    def training_data(self) -> tuple[list[str], list[str]]:
        texts: list[str] = []
        labels: list[str] = []
        for name, intent in self.intents.items():
            texts += intent.examples
            labels += [name] * len(intent.examples)
        texts += self.out_of_scope_examples
        labels += [OUT_OF_SCOPE] * len(self.out_of_scope_examples)
        return texts, labels


FILES: dict[str, type[BaseModel]] = {
    "domain.yaml": DomainSettings,
    "intents.yaml": IntentsFile,
    "slots.yaml": SlotsFile,
    "flows.yaml": FlowsFile,
    "prompts.yaml": PromptsFile,
}
OPTIONAL_FILES = {"slots.yaml"}


def domain_files(root: Path) -> list[Path]:
    """The files whose edits change the domain (what hot reload watches)."""
    return [root / name for name in FILES]


def _validated(doc: SourceDoc, model: type[BaseModel], problems: list[Problem]) -> Any:
    try:
        return model.model_validate(doc.data if doc.data is not None else {})
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
            where = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(doc.problem(loc, f"{where}: {err['msg']}"))
        return None


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def load_domain_spec(root: Path | str) -> DomainSpec:
    """Read and validate a domain folder, raising DomainError listing every problem."""
    root = Path(root)
    if not root.is_dir():
        raise DomainError([Problem(str(root), None, "domain folder not found")])
    problems: list[Problem] = []
    docs: dict[str, SourceDoc] = {}
    parsed: dict[str, Any] = {}
    for name, model in FILES.items():
        path = root / name
        if not path.exists():
            if name in OPTIONAL_FILES:
                docs[name] = SourceDoc(str(path), {})
                parsed[name] = model.model_validate({})
                continue
            problems.append(Problem(str(path), None, "required file is missing"))
            continue
        try:
            docs[name] = load_yaml_file(path)
        except DomainError as exc:
            problems += exc.problems
            continue
        parsed[name] = _validated(docs[name], model, problems)
    if problems or any(v is None for v in parsed.values()):
        raise DomainError(problems)
    spec = DomainSpec(
        root=root,
        settings=parsed["domain.yaml"],
        intents=parsed["intents.yaml"].intents,
        out_of_scope_examples=parsed["intents.yaml"].out_of_scope,
        slots=parsed["slots.yaml"].slots,
        flows=parsed["flows.yaml"].flows,
        prompts=parsed["prompts.yaml"].prompts,
    )
    problems += _cross_check(spec, docs)
    if problems:
        raise DomainError(problems)
    return spec


def _cross_check(spec: DomainSpec, docs: dict[str, SourceDoc]) -> list[Problem]:
    """The references between files: what pydantic cannot see."""
    problems: list[Problem] = []
    d, i, s, f, p = (docs[n] for n in FILES)

    # Examples: a duplicate inside an intent is noise, across intents it is a contradiction.
    owner: dict[str, tuple[str, PathKey]] = {}
    for name, intent in spec.intents.items():
        if name == OUT_OF_SCOPE:
            problems.append(i.problem(("intents", name), f"'{OUT_OF_SCOPE}' is built in; list its examples under top-level 'out_of_scope'"))
        for k, example in enumerate(intent.examples):
            key = " ".join(example.lower().split())
            path: PathKey = ("intents", name, "examples", k)
            if key in owner:
                first_intent, first_path = owner[key]
                where = "again" if first_intent == name else f"also under intent {first_intent!r}"
                problems.append(i.problem(path, f"duplicate example {example!r} ({where}, line {i.line_of(first_path)})"))
            else:
                owner[key] = (name, path)
    for k, example in enumerate(spec.out_of_scope_examples):
        key = " ".join(example.lower().split())
        if key in owner:
            problems.append(i.problem(("out_of_scope", k), f"out_of_scope example {example!r} is also an example of intent {owner[key][0]!r}"))

    # Every intent has a flow; every flow belongs to an intent.
    for name in spec.intents:
        if name not in spec.flows:
            problems.append(i.problem(("intents", name), f"intent {name!r} has no flow in flows.yaml"))
    for name in spec.flows:
        if name not in spec.intents:
            problems.append(f.problem(("flows", name), f"flow {name!r} is not an intent{_suggest(name, spec.intents)}"))

    rules = spec.settings.rules
    for field in ("agent_intent", "goodbye_intent"):
        intent = getattr(rules, field)
        if intent not in spec.intents:
            problems.append(d.problem(("rules", field), f"rules.{field} names unknown intent {intent!r}{_suggest(intent, spec.intents)}"))
    if rules.agent_dtmf not in DTMF_KEYS:
        problems.append(d.problem(("rules", "agent_dtmf"), f"{rules.agent_dtmf!r} is not a DTMF key"))
    if spec.settings.menu is not None:
        menu = spec.settings.menu
        _check_prompt(menu.prompt, ("menu", "prompt"), d, spec, problems, None, after_lookup=False)
        for key, intent in menu.options.items():
            path = ("menu", "options", key)
            if key not in DTMF_KEYS or len(key) != 1:
                problems.append(d.problem(path, f"menu key {key!r} is not a single DTMF key"))
            if key == rules.agent_dtmf:
                problems.append(d.problem(path, f"menu key {key!r} is already rules.agent_dtmf"))
            if intent not in spec.intents:
                problems.append(d.problem(path, f"menu option {key} names unknown intent {intent!r}{_suggest(intent, spec.intents)}"))

    problems += _check_recording(spec, d)
    problems += _check_survey(spec, d)

    for name in REQUIRED_PROMPTS:
        if name not in spec.prompts:
            problems.append(Problem(p.file, p.line_of(("prompts",)), f"required prompt {name!r} is missing"))
    for name, text in spec.prompts.items():
        problems += _check_template(text, ("prompts", name), p, spec, None)
        for field in TEMPLATE_FIELD.findall(text):
            slot = spec.slots.get(field)
            if slot is not None and slot.sensitive and slot.mask != "last4":
                problems.append(p.problem(("prompts", name), f"prompt {name!r} would say sensitive slot {{{field}}}"
                                          " aloud, into the recording and the transcript; only a slot with"
                                          " 'mask: last4' may be read back (as its last four digits)"))

    for name, slot in spec.slots.items():
        for key in ("prompt", "reprompt"):
            ref = getattr(slot, key)
            if ref is not None:
                _check_prompt(ref, ("slots", name, key), s, spec, problems, None, after_lookup=False)
        for opt_name, opt in slot.options.items():
            if opt.dtmf is not None and (len(opt.dtmf) != 1 or opt.dtmf not in DTMF_KEYS):
                problems.append(s.problem(("slots", name, "options", opt_name, "dtmf"), f"{opt.dtmf!r} is not a single DTMF key"))

    for name, flow in spec.flows.items():
        _check_steps(flow.steps, ("flows", name, "steps"), f, spec, problems, set(), False)
    return problems


def _check_recording(spec: DomainSpec, d: SourceDoc) -> list[Problem]:
    """A recorded domain tells the caller and lets them say no, with a key nothing else uses."""
    problems: list[Problem] = []
    rec, rules = spec.settings.recording, spec.settings.rules
    if not rec.record:
        return problems
    path: PathKey = ("recording",)
    for field in ("consent_prompt", "opted_out_prompt"):
        ref = getattr(rec, field)
        if ref is not None and ref not in spec.prompts:
            problems.append(d.problem((*path, field), f"recording.{field}: unknown prompt {ref!r}{_suggest(ref, spec.prompts)}"))
    if rec.opt_out_dtmf is None and not rec.opt_out_phrases:
        problems.append(d.problem(path, "a recorded domain needs a way to opt out: opt_out_dtmf, opt_out_phrases or both"))
    key = rec.opt_out_dtmf
    if key is not None:
        where = (*path, "opt_out_dtmf")
        if len(key) != 1 or key not in DTMF_KEYS - {"*", "#"}:
            problems.append(d.problem(where, f"recording.opt_out_dtmf {key!r} is not a single digit key (0-9)"))
        elif key == rules.agent_dtmf:
            problems.append(d.problem(where, f"recording.opt_out_dtmf {key!r} is already rules.agent_dtmf"))
        elif spec.settings.menu is not None and key in spec.settings.menu.options:
            problems.append(d.problem(where, f"recording.opt_out_dtmf {key!r} is already a menu key"))
        else:
            for name, slot in spec.slots.items():
                if any(option.dtmf == key for option in slot.options.values()):
                    problems.append(d.problem(where, f"recording.opt_out_dtmf {key!r} is already a key of slot {name!r}"))
    return problems


def _check_survey(spec: DomainSpec, d: SourceDoc) -> list[Problem]:
    """The survey's lines are said as they are: a {field} in one would be read out."""
    survey = spec.settings.survey
    return [d.problem(("survey", name), f"survey.{name} has a template field {{{field}}}; survey lines are said"
                                        " as written")
            for name in ("prompt", "reprompt", "thanks")
            for field in TEMPLATE_FIELD.findall(getattr(survey, name))[:1]]


def _check_steps(steps: list[Step], path: PathKey, doc: SourceDoc, spec: DomainSpec,
                 problems: list[Problem], filled: set[str], after_lookup: bool) -> None:
    filled = set(filled)
    for k, step in enumerate(steps):
        here = (*path, k)
        kind = step.kind
        if kind == "ask":
            assert step.ask is not None
            if step.ask not in spec.slots:
                problems.append(doc.problem((*here, "ask"), f"step asks for unknown slot {step.ask!r}{_suggest(step.ask, spec.slots)}"))
            filled.add(step.ask)
        elif kind in ("say", "confirm"):
            _check_prompt(getattr(step, kind), (*here, kind), doc, spec, problems, filled, after_lookup)
            if step.on_no:
                _check_steps(step.on_no, (*here, "on_no"), doc, spec, problems, filled, after_lookup)
        elif kind == "lookup":
            for arg, template in step.args.items():
                problems += _check_template(template, (*here, "args", arg), doc, spec, filled, after_lookup)
            if step.on_failure:
                _check_steps(step.on_failure, (*here, "on_failure"), doc, spec, problems, filled, after_lookup)
            after_lookup = True
        elif kind == "goto":
            assert step.goto is not None
            if step.goto not in spec.flows:
                problems.append(doc.problem((*here, "goto"), f"goto names unknown flow {step.goto!r}{_suggest(step.goto, spec.flows)}"))


def _check_prompt(ref: str, path: PathKey, doc: SourceDoc, spec: DomainSpec,
                  problems: list[Problem], filled: set[str] | None, after_lookup: bool) -> None:
    """A prompt reference must exist; inside a flow (``filled`` given) its fields must be
    known by the time it is said."""
    if ref not in spec.prompts:
        problems.append(doc.problem(path, f"unknown prompt {ref!r}{_suggest(ref, spec.prompts)}"))
        return
    if filled is None:
        return
    for field in TEMPLATE_FIELD.findall(spec.prompts[ref]):
        if field in spec.slots and field not in filled:
            problems.append(doc.problem(path, f"prompt {ref!r} uses slot {{{field}}} before the flow asks for it"))
        if field.startswith("result.") and not after_lookup:
            problems.append(doc.problem(path, f"prompt {ref!r} uses {{{field}}} before any lookup in this flow"))


def _check_template(text: str, path: PathKey, doc: SourceDoc, spec: DomainSpec,
                    filled: set[str] | None, after_lookup: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    for field in TEMPLATE_FIELD.findall(text):
        head = field.split(".", 1)[0]
        if head in ("result", "caller"):
            if head == "result" and not after_lookup:
                problems.append(doc.problem(path, f"{{{field}}} is used before any lookup"))
            continue
        if field not in spec.slots:
            problems.append(doc.problem(path, f"template field {{{field}}} is not a slot, result.* or caller.*{_suggest(field, spec.slots)}"))
        elif filled is not None and field not in filled:
            problems.append(doc.problem(path, f"slot {{{field}}} is used before the flow asks for it"))
    return problems
