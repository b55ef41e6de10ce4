"""`voicebot serve | chat | nlu | bench | models | queue-log | records`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

DEFAULT_DOMAIN = Path(__file__).resolve().parents[1] / "domains" / "bank"


def _offline() -> None:
    # Models come from local packages; never let a library reach for a hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _load(domain_dir: Path):  # -> Domain
    from voicebot.nlu.nlu import default_embedder, load_domain
    from voicebot.nlu.yamlsource import DomainError

    try:
        return load_domain(domain_dir, default_embedder())
    except DomainError as exc:
        print(f"domain {domain_dir} is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_chat(args: argparse.Namespace) -> int:
    from voicebot.backends import backend_for
    from voicebot.nlu.dialog import Ask, CallStarted, Dialog, DtmfPressed, Hangup, NoInput, Say, Transfer, UserSaid
    from voicebot.textchat import turn

    domain = _load(args.domain)
    backend = backend_for(domain.spec.settings.backend)
    dialog = Dialog(domain)
    print(f"{domain.name}: type what the caller says; '#5' presses DTMF 5, an empty line is silence, Ctrl-D hangs up.")

    def show(actions: list, traces_before: int) -> None:
        for action in actions:
            if isinstance(action, (Say, Ask)):
                print(f"bot> {action.text}")
            elif isinstance(action, Transfer):
                print(f"bot> [transfer to queue {action.queue!r}, priority {action.priority}, "
                      f"skills {list(action.skills)}, reason {action.reason!r}]")
            elif isinstance(action, Hangup):
                print(f"bot> [hang up: {action.reason}]")
        for trace in dialog.trace[traces_before:]:
            conf = "" if trace.confidence is None else f" ({trace.confidence:.2f})"
            print(f"      [{trace.event}] intent={trace.intent}{conf} slots={trace.slots} rule={trace.rule}")

    async def step(event) -> None:
        before = len(dialog.trace)
        show(await turn(dialog, backend, event), before)

    async def loop() -> None:
        await step(CallStarted())
        while not dialog.ended:
            try:
                line = input("you> ")
            except EOFError:
                print()
                return
            line = line.strip()
            if not line:
                event = NoInput()
            elif line.startswith("#") and len(line) > 1:
                for key in line[1:]:
                    await step(DtmfPressed(key))
                    if dialog.ended:
                        return
                continue
            else:
                event = UserSaid(line)
            await step(event)

    asyncio.run(loop())
    return 0


def cmd_nlu_predict(args: argparse.Namespace) -> int:
    from voicebot.nlu.dialog import Dialog, UserSaid
    from voicebot.nlu.domain import OUT_OF_SCOPE

    domain = _load(args.domain)
    for line in sys.stdin:
        text = line.rstrip("\n")
        if not text.strip():
            continue
        prediction = domain.classifier.predict(text)
        slots: dict[str, str] = {}
        if prediction.intent != OUT_OF_SCOPE and prediction.intent in domain.spec.flows:
            dialog = Dialog(domain)
            dialog.state = "top"
            dialog.handle(UserSaid(text))
            slots = dialog.slot_display()
        print(json.dumps({"text": text, "intent": prediction.intent,
                          "confidence": round(prediction.confidence, 4), "slots": slots}), flush=True)
    return 0


def cmd_nlu_eval(args: argparse.Namespace) -> int:
    from voicebot.nlu.evaluation import evaluate, load_eval_set
    from voicebot.nlu.yamlsource import DomainError

    domain = _load(args.domain)
    data = args.data or args.domain / "eval.yaml"
    try:
        pairs = load_eval_set(data)
    except DomainError as exc:
        print(exc, file=sys.stderr)
        return 2
    report = evaluate(domain.classifier, pairs, worst=args.worst)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.render())
    failed = []
    if args.min_accuracy is not None and report.in_scope_accuracy < args.min_accuracy:
        failed.append(f"in-scope accuracy {report.in_scope_accuracy:.1%} < {args.min_accuracy:.1%}")
    if args.min_oos_recall is not None and (report.oos_recall or 0.0) < args.min_oos_recall:
        failed.append(f"out-of-scope recall {report.oos_recall or 0:.1%} < {args.min_oos_recall:.1%}")
    for line in failed:
        print(f"FAIL: {line}", file=sys.stderr)
    return 1 if failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from voicebot.modelstore import ModelMissing, manifest, prepare, resolve

    if args.action == "prepare":
        from tqdm import tqdm

        bars: dict[str, tqdm] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in bars:
                bars[name] = tqdm(total=total, unit="B", unit_scale=True, desc=name)
            bars[name].update(done - bars[name].n)

        try:
            roles = prepare(progress)
        except ModelMissing as exc:
            print(f"voicebot models prepare: {exc}", file=sys.stderr)
            return 1
        for bar in bars.values():
            bar.close()
        print(f"prepared: {', '.join(roles) or 'nothing to join'}")
    status = 0
    for role, entry in manifest().items():
        try:
            where = str(resolve(role))
        except ModelMissing as exc:
            where, status = f"MISSING: {exc}", 1
        print(f"{role:<11} {entry.size_mb:>4.0f} MB  {entry.licence:<14.14} {entry.package}\n{'':<11} {where}")
    return status


def cmd_serve(args: argparse.Namespace) -> int:
    from voicebot.config import SettingsError, load_settings
    from voicebot.server import serve

    try:
        settings = load_settings(args.config, host=args.host, port=args.port, domain=args.domain,
                                 records_db=args.db, asr_model=args.asr_model, sip_port=args.sip_port)
    except SettingsError as exc:
        print(f"voicebot serve: bad settings: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


def cmd_passwd(args: argparse.Namespace) -> int:
    from voicebot.auth import passwd_main

    return passwd_main([])


def cmd_queue_log(args: argparse.Namespace) -> int:
    """The ACD's queue log from the records database: Asterisk's queue_log lines, or JSON lines."""
    from voicebot.config import SettingsError, load_settings
    from voicebot.handoff.queue_log import export_asterisk
    from voicebot.records.store import RecordStore

    try:
        db = args.db or load_settings(args.config).records_db
    except SettingsError as exc:
        print(f"voicebot queue-log: bad settings: {exc}", file=sys.stderr)
        return 2
    if not Path(db).exists():
        print(f"voicebot queue-log: no records database at {db}", file=sys.stderr)
        return 2
    store = RecordStore(db)
    try:
        rows = store.queue_log(args.since, args.until, limit=args.limit)
    finally:
        store.close()
    if args.format == "asterisk":
        sys.stdout.writelines(export_asterisk(rows))
    else:
        for row in rows:
            print(json.dumps(row))
    return 0


def cmd_records(args: argparse.Namespace) -> int:
    """A caller's data requests: one call as JSON, or every call of a caller number deleted."""
    from voicebot.config import SettingsError, load_settings
    from voicebot.records.privacy import delete_caller, export_call
    from voicebot.records.recording import default_dir
    from voicebot.records.store import RecordStore

    try:
        settings = None if args.db else load_settings(args.config)
    except SettingsError as exc:
        print(f"voicebot records: bad settings: {exc}", file=sys.stderr)
        return 2
    db = args.db or settings.records_db
    folder = (settings.recordings_dir if settings else None) or default_dir(db)
    if not Path(db).exists():
        print(f"voicebot records: no records database at {db}", file=sys.stderr)
        return 2
    store = RecordStore(db)
    try:
        if args.records_command == "export":
            data = export_call(store, args.call)
            if data is None:
                print(f"voicebot records: no call {args.call!r}", file=sys.stderr)
                return 1
            print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
            return 0
        removed = delete_caller(store, args.caller, folder)
    finally:
        store.close()
    if not removed.calls:
        print(f"no calls from {args.caller!r}")
        return 0
    print(f"deleted {len(removed.calls)} calls from {args.caller!r}:")
    for line in removed.lines():
        print(f"  {line}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from voicebot.bench import run_latency, summary

    result = run_latency(args.out, tuple(args.voices.split(",")), args.asr_trim_window, args.end_of_turn)
    print(summary(result))
    print(f"wrote {args.out}")
    return 0


def _domain_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", type=Path, default=Path(os.environ.get("VOICEBOT_DOMAIN", DEFAULT_DOMAIN)),
                   help="domain folder (default: the sample bank domain)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description="Realtime voice AI IVR and virtual agent server")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server (settings: voicebot.yaml, VOICEBOT_* env, flags)")
    p.add_argument("--config", type=Path, help="settings file (default: ./voicebot.yaml if present)")
    p.add_argument("--domain", type=Path, help="domain folder (default: the sample bank domain)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--db", type=Path, help="SQLite file for call records")
    p.add_argument("--asr-model", help="asr (tiny.en), asr_base, or a CTranslate2 Whisper folder")
    p.add_argument("--sip-port", type=int, help="SIP UDP port (default 5060; 0 picks a free one)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("passwd", help="read a password on stdin, print its hash for voicebot.yaml")
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("queue-log", help="print the ACD's queue log (Asterisk queue_log format or JSON lines)")
    p.add_argument("--format", choices=["asterisk", "json"], default="asterisk")
    p.add_argument("--config", type=Path, help="settings file (for records_db)")
    p.add_argument("--db", type=Path, help="SQLite records file (default: records_db from the settings)")
    p.add_argument("--from", dest="since", type=float, help="epoch seconds, inclusive")
    p.add_argument("--to", dest="until", type=float, help="epoch seconds, exclusive")
    p.add_argument("--limit", type=int, default=1_000_000)
    p.set_defaults(func=cmd_queue_log)

    p = sub.add_parser("records", help="a caller's data requests: export a call, delete a caller's calls")
    records_sub = p.add_subparsers(dest="records_command", required=True)
    for name, what in (("export", "print one call as JSON: record, transcript, events, queue log, recording"),
                       ("delete", "delete every call of a caller number: records, turns, events, queue log, recordings")):
        q = records_sub.add_parser(name, help=what)
        if name == "export":
            q.add_argument("--call", required=True, help="the call's id")
        else:
            q.add_argument("--caller", required=True, help="the caller's number, as the records have it")
        q.add_argument("--config", type=Path, help="settings file (for records_db and recordings_dir)")
        q.add_argument("--db", type=Path, help="SQLite records file (default: records_db from the settings)")
        q.set_defaults(func=cmd_records)

    p = sub.add_parser("chat", help="talk to a domain as text in the terminal")
    _domain_arg(p)
    p.set_defaults(func=cmd_chat)

    nlu = sub.add_parser("nlu", help="intent tools for conversation designers")
    nlu_sub = nlu.add_subparsers(dest="nlu_command", required=True)
    p = nlu_sub.add_parser("predict", help="stdin utterances → JSON lines with intent, confidence, slots")
    _domain_arg(p)
    p.set_defaults(func=cmd_nlu_predict)
    p = nlu_sub.add_parser("eval", help="score the domain on a labelled set")
    _domain_arg(p)
    p.add_argument("--data", type=Path, help="evaluation YAML (default: DOMAIN/eval.yaml)")
    p.add_argument("--min-accuracy", type=float, help="exit 1 if in-scope accuracy is below this (0-1)")
    p.add_argument("--min-oos-recall", type=float, help="exit 1 if out-of-scope recall is below this (0-1)")
    p.add_argument("--worst", type=int, default=10, help="how many wrong examples to list")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_nlu_eval)

    p = sub.add_parser("models", help="list model roles and their resolved files")
    p.add_argument("action", nargs="?", choices=["list", "prepare"], default="list")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("bench", help="latency benchmark: real-time scripted calls, JSON out")
    p.add_argument("what", choices=["latency"])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "latency_cpu.json")
    p.add_argument("--voices", default="piper,espeak", help="comma-separated: piper, espeak")
    p.add_argument("--asr-trim-window", action=argparse.BooleanOptionalAction, default=True,
                   help="trimmed Whisper window, as the server's default (--no-asr-trim-window: the full 30 s)")
    p.add_argument("--end-of-turn", choices=["silence", "smart_turn"], default="silence")
    p.set_defaults(func=cmd_bench)

    return parser


def main(argv: list[str] | None = None) -> int:
    _offline()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:  # pipecat logs through loguru at DEBUG by default: one line per frame processor event
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="DEBUG" if args.verbose else "WARNING")
    except ImportError:
        pass
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
