"""Carry out the dialog's ``Lookup`` actions: a domain's HTTP webhook, or the built-in fake bank.

Backends never raise into a call: a timeout, a refused connection or a malformed reply becomes
a failed ``LookupResult`` that the flow's ``on_failure`` (or the global rule) handles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import httpx

from voicebot.nlu.dialog import LookupResult
from voicebot.nlu.domain import BackendSpec, WebhookBackend as WebhookSpec

log = logging.getLogger(__name__)


class Backend(Protocol):
    async def lookup(self, name: str, args: dict[str, str], call_id: str = "") -> LookupResult: ...


class WebhookBackend:
    """POSTs ``{"name", "args", "call_id"}`` as JSON; expects ``{"ok", "data", "error"}`` back."""

    def __init__(self, spec: WebhookSpec, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.spec = spec
        self._transport = transport

    async def lookup(self, name: str, args: dict[str, str], call_id: str = "") -> LookupResult:
        payload = {"name": name, "args": args, "call_id": call_id}
        try:
            async with httpx.AsyncClient(timeout=self.spec.timeout_s, transport=self._transport) as client:
                response = await client.post(self.spec.url, json=payload, headers=self.spec.headers)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("lookup %s via %s failed: %s", name, self.spec.url, exc)
            return LookupResult(name, False, {}, "backend_unavailable")
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            log.warning("lookup %s: webhook reply lacks a boolean 'ok': %.200r", name, body)
            return LookupResult(name, False, {}, "backend_bad_reply")
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        return LookupResult(name, body["ok"], data, body.get("error"))


def _money(value: Decimal) -> str:
    return f"${value:,.2f}"


@dataclass
class Account:
    last4: str
    kind: str
    balance: Decimal
    transactions: list[tuple[date, str, Decimal]] = field(default_factory=list)


@dataclass
class Card:
    last4: str
    kind: str
    blocked: bool = False
    statement_balance: Decimal = Decimal("0")


class FakeBank:
    """Example Bank's accounts and cards, in memory, so the sample domain resolves for real.

    Accounts: checking ending 4567, savings ending 1234.  Cards: debit ending 4321, credit
    ending 8765.  Changes (payments, blocked cards) last for the life of the process.
    """

    def __init__(self, today: date | None = None) -> None:
        today = today or date.today()
        self.accounts = {
            "4567": Account("4567", "checking", Decimal("2450.75"), [
                (today - timedelta(days=1), "Corner Grocery", Decimal("-54.20")),
                (today - timedelta(days=2), "City Electric", Decimal("-120.00")),
                (today - timedelta(days=4), "Payroll deposit", Decimal("2100.00")),
                (today - timedelta(days=6), "Coffee House", Decimal("-4.75")),
            ]),
            "1234": Account("1234", "savings", Decimal("10200.00"), [
                (today - timedelta(days=3), "Interest", Decimal("12.40")),
                (today - timedelta(days=30), "Transfer from checking", Decimal("500.00")),
            ]),
        }
        self.cards = {
            "4321": Card("4321", "debit"),
            "8765": Card("8765", "credit", statement_balance=Decimal("842.10")),
        }
        self.payments: list[dict[str, str]] = []

    async def lookup(self, name: str, args: dict[str, str], call_id: str = "") -> LookupResult:
        handler = getattr(self, f"_{name}", None)
        if handler is None or name.startswith("_"):
            return LookupResult(name, False, {}, "unknown_lookup")
        try:
            data = handler(**args)
        except (TypeError, InvalidOperation, KeyError, ValueError) as exc:
            # names and the kind of error only: a value may be what a caller keyed (a PIN, a card)
            log.warning("fake bank %s(%s): %s", name, ", ".join(sorted(args)), type(exc).__name__)
            return LookupResult(name, False, {}, "bad_arguments")
        if "error" in data:
            return LookupResult(name, False, data, data["error"])
        return LookupResult(name, True, data)

    def _account(self, last4: str) -> Account | None:
        return self.accounts.get(last4.strip())

    def _get_balance(self, account: str) -> dict[str, Any]:
        acct = self._account(account)
        if acct is None:
            return {"error": "not_found"}
        return {"account_type": acct.kind, "balance": _money(acct.balance)}

    def _recent_transactions(self, account: str, count: str = "3") -> dict[str, Any]:
        acct = self._account(account)
        if acct is None:
            return {"error": "not_found"}
        recent = sorted(acct.transactions, key=lambda t: t[0], reverse=True)[: int(count)]
        spoken = "; ".join(
            f"{'a credit of' if amount > 0 else 'a debit of'} {_money(abs(amount))} for {what} on {when:%B} {when.day}"
            for when, what, amount in recent
        )
        return {"account_type": acct.kind, "count": str(len(recent)), "transactions": spoken}

    def _block_card(self, card: str) -> dict[str, Any]:
        found = self.cards.get(card.strip())
        if found is None:
            return {"error": "not_found"}
        already = found.blocked
        found.blocked = True
        return {"card_type": found.kind, "already_blocked": "yes" if already else "no",
                "reference": f"BLK-{card}-{len(self.payments) + 100}"}

    def _make_payment(self, amount: str, from_account: str) -> dict[str, Any]:
        value = Decimal(amount)
        source = next((a for a in self.accounts.values() if a.kind == from_account), None)
        if source is None:
            return {"error": "not_found"}
        if value <= 0:
            return {"error": "bad_amount"}
        if value > source.balance:
            return {"error": "insufficient_funds", "balance": _money(source.balance)}
        card = self.cards["8765"]
        source.balance -= value
        card.statement_balance -= value
        reference = f"PAY-{len(self.payments) + 1001}"
        self.payments.append({"amount": str(value), "from": from_account, "reference": reference})
        return {"reference": " ".join(reference.split("-")[1]), "remaining": _money(max(card.statement_balance, Decimal(0))),
                "new_balance": _money(source.balance)}


def backend_for(spec: BackendSpec) -> Backend:
    if spec.webhook is not None:
        return WebhookBackend(spec.webhook)
    return FakeBank()
