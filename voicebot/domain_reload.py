"""The live domain of a running server, reloaded when a designer saves an edit.

New calls get the newest valid domain; calls in progress keep the one they started with.
An edit that does not validate is logged with its file:line problems and the old domain
stays in service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from voicebot.nlu.nlu import Domain, fingerprint
from voicebot.nlu.yamlsource import DomainError

log = logging.getLogger(__name__)


@dataclass
class ReloadStatus:
    loaded_at: float = 0.0
    reloads: int = 0
    rejected: int = 0
    last_problems: list[str] = field(default_factory=list)


class DomainRegistry:
    def __init__(self, root: Path, load: Callable[[Path], Domain]) -> None:
        self.root = root
        self._load = load
        self.status = ReloadStatus()
        self.current = load(root)  # the first load must succeed: refuse to start otherwise
        self.status.loaded_at = time.time()
        self._rejected_fingerprint = ""

    def reload_if_changed(self) -> bool:
        """Reload when the files' content changed; True when a new domain went live."""
        try:
            stamp = fingerprint(self.root)
        except OSError as exc:
            log.warning("cannot read domain %s: %s", self.root, exc)
            return False
        if stamp in (self.current.fingerprint, self._rejected_fingerprint):
            return False
        try:
            domain = self._load(self.root)
        except DomainError as exc:
            self._rejected_fingerprint = stamp
            self.status.rejected += 1
            self.status.last_problems = [str(p) for p in exc.problems]
            log.error("domain edit rejected, still serving the previous version:\n%s", exc)
            return False
        self.current = domain
        self._rejected_fingerprint = ""
        self.status.reloads += 1
        self.status.loaded_at = time.time()
        self.status.last_problems = []
        log.info("domain %s reloaded (%s)", domain.name, domain.fingerprint[:12])
        return True

    async def watch(self, interval_s: float = 1.0) -> None:
        """Poll for edits; training runs in a worker thread so calls are not stalled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.reload_if_changed)
            except Exception:  # a reload bug must never take the server down
                log.exception("domain reload failed")
