"""Resolve each model role to files on disk, from models/manifest.yaml.

A missing model is an error that names the package to install; there is deliberately no
fallback that fetches from a hub, because voicebot hosts are often air-gapped.  Models shipped
in parts (Whisper base) are joined once by ``voicebot models prepare`` into models/cache/.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = Path(os.environ.get("VOICEBOT_MODELS_MANIFEST", ROOT / "models" / "manifest.yaml"))
CACHE = Path(os.environ.get("VOICEBOT_MODEL_CACHE", ROOT / "models" / "cache"))
DATA_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "vocabulary.json", "preprocessor_config.json")


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
    join: dict[str, list[str]] = field(default_factory=dict)


def manifest() -> dict[str, ModelEntry]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return {role: ModelEntry(role=role, **entry) for role, entry in data["models"].items()}


def _locate(spec: str, package: str) -> Path:
    """``module:function`` calls the function; ``module:data/file`` is a file in the package."""
    module_name, _, rest = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelMissing(f"needs the package {package}: pip install {package}") from None
    if "/" in rest or rest == "data":
        return Path(str(importlib.resources.files(module_name).joinpath(rest)))
    return Path(getattr(module, rest)())


def resolve(role: str) -> Path:
    """The local path for ``role``: an override from the environment, else the package's files
    (for joined models, the prepared cache folder)."""
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
    if entry.join:
        folder = CACHE / role
        if not all((folder / name).exists() for name in entry.join):
            raise ModelMissing(f"model {role!r} is shipped in parts: run `voicebot models prepare` "
                               f"(needs {entry.package})")
        return folder
    try:
        path = _locate(entry.locate, entry.package)
    except ModelMissing as exc:
        raise ModelMissing(f"model {role!r} {exc}") from None
    if not path.exists():
        raise ModelMissing(f"model {role!r}: {path} is missing; reinstall {entry.package}")
    return path


def prepare(progress: Callable[[str, int, int], None] | None = None) -> list[str]:
    """Join every multi-part model once into the cache, with its small files beside it.

    Writes to a temporary name and renames, so an interrupted join never looks finished.
    """
    done = []
    for role, entry in manifest().items():
        if not entry.join:
            continue
        folder = CACHE / role
        folder.mkdir(parents=True, exist_ok=True)
        source_dir = _locate(entry.locate, entry.package)
        for name in DATA_FILES:
            if (source_dir / name).exists() and not (folder / name).exists():
                shutil.copy2(source_dir / name, folder / name)
        for target, parts in entry.join.items():
            final = folder / target
            paths = [_locate(p, entry.package) for p in parts]
            total = sum(p.stat().st_size for p in paths)
            if final.exists() and final.stat().st_size == total:
                continue
            tmp = final.with_suffix(final.suffix + ".partial")
            written = 0
            digest = hashlib.sha256()
            with tmp.open("wb") as out:
                for part in paths:
                    with part.open("rb") as src:
                        while chunk := src.read(1 << 22):
                            out.write(chunk)
                            digest.update(chunk)
                            written += len(chunk)
                            if progress:
                                progress(f"{role}/{target}", written, total)
            tmp.rename(final)
            (folder / f"{target}.sha256").write_text(digest.hexdigest() + "\n")
        done.append(role)
    return done
