"""SIP dialogs (RFC 3261 §12), either side: tags, route set, remote target, CSeq; which
requests belong to one (§12.2.2); builds responses and in-dialog requests.  No sockets."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from voicebot.sip.message import SipParseError, SipRequest, SipResponse, parse_name_addr, tag_of

REASONS = {100: "Trying", 180: "Ringing", 183: "Session Progress", 200: "OK", 400: "Bad Request",
           401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
           481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 486: "Busy Here", 487: "Request Terminated",
           488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
           501: "Not Implemented", 503: "Service Unavailable", 505: "Version Not Supported",
           513: "Message Too Large"}
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS"


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def response_to(request: SipRequest, status: int, reason: str | None = None, to_tag: str | None = None,
                body: bytes = b"", content_type: str | None = None) -> SipResponse:
    """A response copying Via, From, To (adding our tag), Call-ID and CSeq (§8.2.6.2)."""
    response = SipResponse(status, reason or REASONS.get(status, "Unknown"))
    for value in request.headers.get_all("Via"):
        response.headers.add("Via", value)
    response.headers.add("From", request.headers.get("From") or "")
    to = request.headers.get("To") or ""
    if to_tag and status != 100 and ";tag=" not in to.replace(" ", "").lower():
        to = f"{to};tag={to_tag}"
    response.headers.add("To", to)
    response.headers.add("Call-ID", request.call_id)
    response.headers.add("CSeq", request.headers.get("CSeq") or "")
    if content_type:
        response.headers.add("Content-Type", content_type)
    response.body = body
    return response


@dataclass
class SipDialog:
    """A dialog seen from our side: ``local_*`` is voicebot, ``remote`` the peer's From/To value."""

    call_id: str
    local_tag: str
    local_uri: str  # our URI (the To of an INVITE we answered, the From of one we sent)
    remote: str  # the peer's header value, tag included
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    remote_cseq: int = 0
    local_cseq: int = 0
    contact: str = ""
    state: str = "early"  # early | confirmed | terminated

    @classmethod
    def from_invite(cls, invite: SipRequest, contact: str) -> "SipDialog":
        target = parse_name_addr((invite.headers.get("Contact") or invite.headers.get("From") or "")).uri
        return cls(call_id=invite.call_id, local_tag=new_tag(), local_uri=parse_name_addr(invite.headers.get("To") or "").uri,
                   remote=invite.headers.get("From") or "", remote_target=target,
                   route_set=invite.headers.get_all("Record-Route"), remote_cseq=invite.cseq[0],
                   local_cseq=secrets.randbelow(10000) + 1, contact=contact)

    @classmethod
    def from_2xx(cls, invite: SipRequest, response: SipResponse, contact: str) -> "SipDialog":
        """The dialog our own INVITE created (§12.1.2): the route set is Record-Route reversed."""
        target = parse_name_addr(response.headers.get("Contact") or invite.headers.get("To") or "").uri
        local = parse_name_addr(invite.headers.get("From") or "")
        return cls(call_id=invite.call_id, local_tag=local.tag or "", local_uri=local.uri,
                   remote=response.headers.get("To") or "", remote_target=target,
                   route_set=list(reversed(response.headers.get_all("Record-Route"))), remote_cseq=0,
                   local_cseq=invite.cseq[0], contact=contact, state="confirmed")

    @property
    def remote_tag(self) -> str | None:
        return tag_of(self.remote)

    def matches(self, request: SipRequest) -> bool:
        """§12.2.2: a request is in this dialog only when its Call-ID is the dialog's, its From
        tag is the peer's tag and its To tag ours (random, and only ever sent to the peer).  The
        Call-ID alone is not enough: it is often guessable and seen by many (proxies, logs, CDRs),
        and whoever has it must not end or move the call."""
        return (request.call_id == self.call_id and tag_of(request.headers.get("To")) == self.local_tag
                and tag_of(request.headers.get("From")) == self.remote_tag)

    @property
    def remote_user(self) -> str:
        """The user part of the peer's URI: for a call we answered, the caller's number."""
        try:
            uri = parse_name_addr(self.remote).uri
        except SipParseError:
            return ""
        return uri.split(":", 1)[-1].split("@", 1)[0].split(";")[0]

    def answer(self, request: SipRequest, status: int, body: bytes = b"", content_type: str | None = None,
               extra: list[tuple[str, str]] | None = None) -> SipResponse:
        response = response_to(request, status, to_tag=self.local_tag, body=body, content_type=content_type)
        if 180 <= status < 300 and request.method == "INVITE":
            for route in self.route_set:
                response.headers.add("Record-Route", route)
            response.headers.add("Contact", f"<{self.contact}>")
            response.headers.add("Allow", ALLOW)
            response.headers.add("Supported", "")
        for name, value in extra or []:
            response.headers.add(name, value)
        return response

    def request(self, method: str, via_host: str, via_port: int, transport: str = "UDP",
                extra: list[tuple[str, str]] | None = None) -> SipRequest:
        """An in-dialog request (BYE, re-INVITE, REFER) to the remote target via the route set."""
        self.local_cseq += 1
        request = SipRequest(method, self.remote_target)
        request.headers.add("Via", f"SIP/2.0/{transport} {via_host}:{via_port};branch={new_branch()};rport")
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", f"<{self.local_uri}>;tag={self.local_tag}")
        request.headers.add("To", self.remote)
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{self.local_cseq} {method}")
        for route in self.route_set:  # §12.1.1: a UAS keeps Record-Route in order
            request.headers.add("Route", route)
        request.headers.add("Contact", f"<{self.contact}>")
        for name, value in extra or []:
            request.headers.add(name, value)
        return request
