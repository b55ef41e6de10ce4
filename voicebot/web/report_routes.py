"""Reports over HTTP: ``GET /api/reports?from=&to=&queue=&interval=`` — every KPI of
``records.kpis`` for a range, per queue, agent, intent and interval, with Erlang C staffing per
queue — as JSON, or as CSV with ``format=csv`` or ``Accept: text/csv``.  Supervisors and admins
only.  The formulas are in docs/kpis.md.

``from`` and ``to`` take epoch seconds, an ISO 8601 date-time (no zone: the server's local
time) or a date (``from`` its first moment, ``to`` its last: ``from=2026-03-02&to=2026-03-02``
is that whole day).  Without them the report covers today, local midnight until now.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from voicebot.config import QueueSettings
from voicebot.handoff.acd import STAFFED
from voicebot.handoff.erlang import staffing
from voicebot.records import kpis
from voicebot.records.store import RecordStore
from voicebot.web.auth_routes import require

if TYPE_CHECKING:
    from voicebot.config import Settings
    from voicebot.handoff.acd import Acd

MAX_RANGE_S = 400 * 86400.0  # a little over a year
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH = re.compile(r"^-?\d+(\.\d+)?$")


class BadParameter(ValueError):
    """A query parameter the report cannot use; its text is the 422's detail."""


def parse_when(value: str, name: str, end_of_day: bool = False) -> float:
    """Epoch seconds from epoch seconds, an ISO 8601 date-time, or a date (its start, or with
    ``end_of_day`` the start of the next day)."""
    text = value.strip()
    try:
        if _EPOCH.match(text):
            at = float(text)
        elif _DATE.match(text):
            day = date.fromisoformat(text) + timedelta(days=1 if end_of_day else 0)
            at = datetime.combine(day, datetime.min.time()).timestamp()
        else:
            at = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        raise BadParameter(f"{name}: {value!r} is not a date (2026-03-02), a date-time (2026-03-02T09:30)"
                           " or epoch seconds") from None
    if not math.isfinite(at) or not 0 <= at < 253402300800:  # year 10000
        raise BadParameter(f"{name}: {value!r} is out of range")
    return at


def report_range(start: str | None, end: str | None, now: float) -> tuple[float, float]:
    since = parse_when(start, "from") if start else kpis.day_start(now)
    until = parse_when(end, "to", end_of_day=True) if end else max(now, since + 1.0)
    if until <= since:
        raise BadParameter("to: must come after from")
    if until - since > MAX_RANGE_S:
        raise BadParameter(f"the range is longer than {MAX_RANGE_S / 86400:.0f} days: ask for less at a time")
    return since, until


def staffed_now(acd: "Acd | None", settings: "Settings | None", queue: str, now: float) -> tuple[int, str]:
    """Agents for Erlang C: those taking the queue's calls now when the ACD runs, else those
    configured for it."""
    if acd is not None:
        return sum(1 for a in acd.agents(now) if queue in a.queues and a.state in STAFFED), "logged_in"
    agents = settings.agents if settings is not None else []
    return sum(1 for a in agents if queue in a.queues), "configured"


def queue_staffing(name: str, stats: Mapping[str, Any], q: QueueSettings, seconds: float,
                   agents: int, source: str) -> dict[str, Any]:
    """Erlang C from the range's measured arrival rate (offered / seconds) and AHT (the queue's
    default handle time when no call was handled)."""
    aht, aht_source = stats.get("aht_s"), "measured"
    if not aht:
        aht, aht_source = q.default_handle_s, "default_handle_s"
    rate = stats["offered"] / seconds if seconds > 0 else 0.0
    base = {"queue": name, "rate_per_hour": rate * 3600, "aht_source": aht_source, "agents_source": source}
    try:
        return {**base, **asdict(staffing(rate, aht, agents, q.service_level_s, q.service_level_target))}
    except ValueError as error:  # a rate no sane number of agents meets: say so, keep the report
        return {**base, "rate_per_s": rate, "aht_s": aht, "agents": agents, "error": str(error)}


def csv_rows(report: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The report as flat rows: a ``section`` (interval, queue, agent, intent, staffing, total)
    and a ``name``, then every figure; nested figures get dotted names."""
    for bucket in report["intervals"]:
        yield {"section": "interval", "name": datetime.fromtimestamp(bucket["start"]).isoformat(), **_flat(bucket)}
    for section in ("queues", "agents", "intents"):
        for name, row in report[section].items():
            yield {"section": section[:-1], "name": name, **_flat(row)}
    for name, row in report.get("staffing", {}).items():
        yield {"section": "staffing", "name": name, **_flat(row)}
    yield {"section": "total", "name": "", **_flat(report["totals"])}


def _flat(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        elif not isinstance(value, (list, tuple)):
            out[prefix + key] = value
    return out


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    rows = list(rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, restval="", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    return value


def report_router(store: RecordStore, settings: "Settings | None" = None, acd: "Acd | None" = None,
                  clock: Callable[[], float] = time.time) -> APIRouter:
    """Routes for a router whose dependencies already require a login."""
    router = APIRouter(tags=["reports"])
    queues = dict(settings.queues) if settings is not None else {}
    fcr_days = settings.fcr_days if settings is not None else 7

    @router.get("/api/reports", dependencies=[Depends(require("supervisor"))],
                responses={200: {"content": {"text/csv": {}}, "description": "the report, as JSON or CSV"},
                           404: {"description": "a queue neither configured nor used in the range"},
                           422: {"description": "a parameter the report cannot use"}})
    def reports(request: Request, start: str | None = Query(None, alias="from", max_length=40),
                end: str | None = Query(None, alias="to", max_length=40),
                queue: str | None = Query(None, max_length=64),
                interval: Literal["15m", "hour", "day"] = "hour",
                format: Literal["json", "csv"] | None = None) -> Any:
        """KPIs for the range, per queue, agent, intent and interval, with staffing per queue."""
        now = clock()
        try:
            since, until = report_range(start, end, now)
            rows = kpis.load(store, since, until, now, fcr_days)
            report = kpis.report(rows, since, until, now, queues, interval=interval, queue=queue or None,
                                 fcr_days=fcr_days)
        except ValueError as error:  # BadParameter, or too many buckets for the interval
            raise HTTPException(422, str(error)) from None
        if queue and queue not in queues and not report["totals"]["offered"] and not report["totals"]["refused"]:
            raise HTTPException(404, f"no queue {queue!r} is configured or was used in this range")
        seconds = max(0.0, min(until, now) - since)
        report["staffing"] = {}
        for name, stats in report["queues"].items():
            agents, source = staffed_now(acd, settings, name, now)
            report["staffing"][name] = queue_staffing(name, stats, queues.get(name, kpis.DEFAULT_QUEUE), seconds,
                                                      agents, source)
        wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
        if wants_csv:
            name = f"report-{datetime.fromtimestamp(since):%Y%m%d-%H%M}-{interval}.csv"
            return Response(to_csv(csv_rows(report)), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
        return report

    return router
