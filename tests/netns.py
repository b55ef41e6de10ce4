"""A private network namespace for WebRTC tests: aiortc gathers no loopback candidates, so
client and server talk over a veth pair on 198.18.0.0/24 that exists only inside it."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextmanager
def namespace() -> Iterator[str]:
    name = f"vbt-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "vb0", "type", "veth", "peer", "name", "vb1")
        _ip("-n", name, "addr", "add", f"{SERVER_IP}/24", "dev", "vb0")
        _ip("-n", name, "addr", "add", f"{CLIENT_IP}/24", "dev", "vb1")
        _ip("-n", name, "link", "set", "vb0", "up")
        _ip("-n", name, "link", "set", "vb1", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "pids", name], capture_output=True)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def exec_prefix(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


def launch_chromium(playwright, ns: str, chromium: str, folder: Path, microphone: Path, base: str):  # type: ignore[no-untyped-def]
    """Debian's Chromium inside ``ns``, headless, with ``microphone`` (a WAV) as its microphone
    and ``base`` treated as secure (getUserMedia needs a secure context; a plain-HTTP test
    address is not one)."""
    wrapper = folder / "chromium-in-ns"
    wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {ns} {chromium} \"$@\"\n")
    wrapper.chmod(0o755)
    return playwright.chromium.launch(executable_path=str(wrapper), headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}", "--autoplay-policy=no-user-gesture-required",
        "--disable-features=WebRtcHideLocalIpsWithMdns", f"--unsafely-treat-insecure-origin-as-secure={base}"])
