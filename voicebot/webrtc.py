"""The browser caller leg over WebRTC (aiortc), as a MediaStream.

Signalling is one HTTP exchange (``POST /api/offer``: SDP offer in, answer out), the convention
of pipecat's small WebRTC prebuilt client, so any WebRTC client can call.  Keys pressed on the
caller page arrive over a data channel named "dtmf", one key (or a short string of keys) per
message.  Every other data channel (pipecat clients open a "chat" channel for keep-alives such
as ``ping: 1796066553123`` and RTVI messages) and anything on "dtmf" that is not keys is
ignored and counted, never turned into key presses.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import re
import time

import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame
from prometheus_client import Counter

from voicebot.media import AudioChunk, Dtmf, EdgeStream, OutputBuffer

log = logging.getLogger(__name__)

RATE = 48000
FRAME_SAMPLES = RATE // 50  # 20 ms
DTMF_CHANNEL = "dtmf"
KEYS = re.compile(r"[0-9*#]{1,32}")
DATA_MESSAGES = Counter("voicebot_webrtc_datachannel_messages_total",
                        "Data-channel messages from WebRTC callers: channel_kind dtmf|other, "
                        "outcome keys|not_keys|ignored", ["channel_kind", "outcome"])


def keys_in(channel_label: str, message: object) -> str:
    """The keys a data-channel message carries: all of it when it arrives on the "dtmf" channel
    and is nothing but ``0-9 * #`` (at most 32), else nothing.  Counted either way; a client's
    chatter is never logged per message."""
    if channel_label != DTMF_CHANNEL:
        DATA_MESSAGES.labels("other", "ignored").inc()
        return ""
    if isinstance(message, str) and KEYS.fullmatch(message):
        DATA_MESSAGES.labels("dtmf", "keys").inc()
        return message
    DATA_MESSAGES.labels("dtmf", "not_keys").inc()
    log.debug("dtmf channel: ignored a message that is not keys (%s, %d chars)", type(message).__name__,
              len(message) if isinstance(message, (str, bytes)) else 0)
    return ""


class BotAudioTrack(MediaStreamTrack):
    """Plays the leg's output buffer in real time, 20 ms a frame, silence when idle."""

    kind = "audio"

    def __init__(self, output: OutputBuffer) -> None:
        super().__init__()
        self.output = output
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME_SAMPLES
            delay = self._start + self._pts / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        pcm = self.output.pull() or bytes(FRAME_SAMPLES * 2)
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.pts = self._pts
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class WebRtcCallerLeg(EdgeStream):
    def __init__(self) -> None:
        super().__init__(RATE)
        self.pc = RTCPeerConnection()
        self.pc.addTrack(BotAudioTrack(self.output))

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                asyncio.ensure_future(self._pump(track))

        @self.pc.on("datachannel")
        def on_datachannel(channel) -> None:  # type: ignore[no-untyped-def]
            label = str(channel.label)
            if label != DTMF_CHANNEL:
                log.debug("data channel %.40r opened: its messages are not keys and will be ignored", label)

            @channel.on("message")
            def on_message(message: object) -> None:
                for digit in keys_in(label, message):
                    self.put(Dtmf(digit))

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState in ("failed", "closed", "disconnected"):
                await self.close(f"webrtc_{self.pc.connectionState}")

    @classmethod
    async def answering(cls, sdp: str, kind: str = "offer") -> tuple[WebRtcCallerLeg, RTCSessionDescription]:
        """A leg for a browser's SDP offer, and the answer to send back; a bad offer raises,
        with nothing left open."""
        leg = cls()
        try:
            return leg, await leg.accept(sdp, kind)
        except Exception:
            await leg.release()
            raise

    async def accept(self, sdp: str, kind: str) -> RTCSessionDescription:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription

    async def _pump(self, track: MediaStreamTrack) -> None:
        while not self.closed:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            samples = frame.to_ndarray()
            if samples.ndim == 2 and samples.shape[0] > 1:  # planar: average channels
                samples = samples.mean(axis=0)
            samples = samples.reshape(-1)
            channels = len(frame.layout.channels)
            if frame.format.is_packed and channels > 1:
                samples = samples.reshape(-1, channels).mean(axis=1)
            if samples.dtype != np.int16:
                samples = np.clip(samples, -32768, 32767)
            self.put(AudioChunk(samples.astype(np.int16).tobytes(), frame.sample_rate))
        await self.close("caller_left")

    async def _release(self) -> None:
        await self.pc.close()
