"""Composition root: builds the domain registry, backend and web app, then serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import AsyncIterator

log = logging.getLogger(__name__)


def serve(domain_dir: Path, host: str, port: int) -> int:
    import uvicorn

    from voicebot.backends import backend_for
    from voicebot.domain_reload import DomainRegistry
    from voicebot.nlu.nlu import default_embedder, load_domain
    from voicebot.nlu.yamlsource import DomainError
    from voicebot.web.app import create_app

    embedder = default_embedder()
    try:
        registry = DomainRegistry(domain_dir, lambda root: load_domain(root, embedder))
    except DomainError as exc:
        print(f"refusing to start: domain {domain_dir} is invalid:\n{exc}", file=sys.stderr)
        return 2
    @contextlib.asynccontextmanager
    async def lifespan(_app: object) -> AsyncIterator[None]:
        watcher = asyncio.create_task(registry.watch())
        base = f"http://{host}:{port}"
        print(f"voicebot: serving domain {registry.current.name!r} from {domain_dir}", flush=True)
        print(f"  text chat API  {base}/api/chat   (POST to start, then POST {{\"text\": ...}})", flush=True)
        print(f"  domain status  {base}/api/domain  (edits to the YAML go live for new calls)", flush=True)
        print(f"  API docs       {base}/docs", flush=True)
        print("  caller page and agent desktop: not built yet (realtime voice path and ACD issues)", flush=True)
        yield
        watcher.cancel()

    app = create_app(registry, backend_for(registry.current.spec.settings.backend), lifespan)
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0
