"""A WebRTC caller written the way pipecat's SmallWebRTC / aiortc examples write one: an aiortc
``RTCPeerConnection``, a WAV file as the microphone (``MediaPlayer``), the SDP offer POSTed to
``/api/offer``, and a "chat" data channel that carries ``ping: <ms>`` keep-alives and RTVI
messages (with digits in them) for the whole call.  It also opens the caller page's "dtmf"
channel, sends one message there that is not keys, and, once the bot asks for the account's
last four digits, the keys themselves.

Run it inside the test's network namespace (aiortc gathers no loopback candidates)::

    python -m tests.web.rtc_client --base http://198.18.0.1:8080 --wav mic.wav --token T

It prints one JSON object: the call id, what it sent, the call record and the server's
``/metrics`` text before and after the call (the server may have taken other calls).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from typing import Any

import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer

PING_EVERY_S = 0.2
RTVI_EVERY_S = 1.0


def rtvi(kind: str, data: dict[str, Any]) -> str:
    return json.dumps({"label": "rtvi-ai", "type": kind, "id": uuid.uuid4().hex[:8], "data": data})


RTVI_READY = rtvi("client-ready", {"version": "1.0.0", "about": {"library": "@pipecat-ai/client-js",
                                                              "library_version": "1.2.0", "platform": "aiortc"}})


def rtvi_action(n: int) -> str:
    text = f"call me back on 555 0{n:03d} 12 34, press 1 then #, ping: {int(time.time() * 1000)}"
    return rtvi("action", {"service": "llm", "action": "append_to_messages",
                           "arguments": [{"name": "messages", "value": [{"role": "user", "content": text}]}]})


async def call(base: str, wav: str, token: str, keys: list[str]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    sent = {"chat": 0, "dtmf_keys": 0, "dtmf_not_keys": 0}
    pc = RTCPeerConnection()
    player = MediaPlayer(wav)
    pc.addTrack(player.audio)
    pc.addTransceiver("video", direction="recvonly")  # pipecat's client offers to receive video
    chat = pc.createDataChannel("chat")
    dtmf = pc.createDataChannel("dtmf")

    async def chatter() -> None:
        n = 0
        while True:
            if chat.readyState == "open":
                if n == 0:
                    chat.send(RTVI_READY)
                    sent["chat"] += 1
                chat.send(f"ping: {int(time.time() * 1000)}")
                sent["chat"] += 1
                if n % round(RTVI_EVERY_S / PING_EVERY_S) == 0:
                    chat.send(rtvi_action(n))
                    chat.send(b"\x01\x02 1234 #")  # binary too
                    sent["chat"] += 2
                n += 1
            await asyncio.sleep(PING_EVERY_S)

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        deadline = time.monotonic() + 180
        while True:  # the server loads its models first
            try:
                if (await http.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not come up")
            await asyncio.sleep(1)
        metrics_before = (await http.get("/metrics", headers=headers)).text
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)  # aiortc gathers its candidates here
        reply = await http.post("/api/offer", json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type,
                                                    "pc_id": None, "restart_pc": False})
        reply.raise_for_status()
        answer = reply.json()
        call_id = answer["call_id"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        pinger = asyncio.ensure_future(chatter())

        async def record() -> dict[str, Any]:
            r = await http.get(f"/api/calls/{call_id}", headers=headers)
            r.raise_for_status()
            return r.json()

        async def wait_for_bot(text: str, timeout_s: float) -> dict[str, Any]:
            deadline = time.monotonic() + timeout_s
            while True:
                rec = await record()
                if any(text in t["text"] for t in rec["turns"] if t["speaker"] == "bot"):
                    return rec
                if rec.get("ended_at") or time.monotonic() > deadline:
                    raise SystemExit(f"the bot never said {text!r}: {json.dumps(rec)[:3000]}")
                await asyncio.sleep(0.5)

        try:
            while dtmf.readyState != "open":
                await asyncio.sleep(0.05)
            dtmf.send("hello 12")  # on the keys channel, but not keys
            sent["dtmf_not_keys"] += 1
            await wait_for_bot("last four digits", 120)
            for k in keys:
                dtmf.send(k)
                sent["dtmf_keys"] += 1
                await asyncio.sleep(0.25)
            await wait_for_bot("$2,450.75", 60)
            metrics = (await http.get("/metrics", headers=headers)).text
        finally:
            pinger.cancel()
            await pc.close()
        await asyncio.sleep(1.0)  # the server notices the hang-up and ends the record
        return {"call_id": call_id, "sent": sent, "record": await record(), "metrics_before": metrics_before,
                "metrics": metrics}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--wav", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--keys", default="45,6,7", help="comma-separated data-channel messages")
    args = p.parse_args()
    result = asyncio.run(call(args.base, args.wav, args.token, args.keys.split(",")))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
