"""Where trained checks models live: ``$GROUNDED_MODEL_CACHE/checks/<fingerprint>/``.

A model's directory name is the fingerprint of its recipe and training data, so the same
recipe on the same data is trained once and found again; ``checks/ACTIVE`` names the model
that :func:`active_model_dir` (and so the verifier and the engine) uses: the last one trained,
or the one set with :func:`activate`.
"""

from __future__ import annotations

import os
from pathlib import Path

from grounded.errors import ConfigError

__all__ = ["activate", "active_model_dir", "checks_cache", "model_dir", "write_pointer"]


def checks_cache() -> Path:
    """``$GROUNDED_MODEL_CACHE/checks`` (default ``~/.cache/grounded/models/checks``)."""
    root = Path(os.environ.get("GROUNDED_MODEL_CACHE", Path.home() / ".cache" / "grounded" / "models"))
    return root / "checks"


def model_dir(fingerprint: str) -> Path:
    """The directory of the model trained with ``fingerprint``."""
    return checks_cache() / fingerprint


def activate(fingerprint: str) -> Path:
    """Make the model ``fingerprint`` the one :func:`active_model_dir` returns (atomic replace)."""
    path = model_dir(fingerprint)
    if not (path / "checks.json").is_file():
        raise ConfigError(f"no trained checks model {fingerprint!r} in {checks_cache()}")
    write_pointer(checks_cache(), fingerprint)
    return path


def write_pointer(folder: Path, fingerprint: str) -> None:
    """Point ``folder/ACTIVE`` at ``fingerprint`` (written aside, then renamed: readers never see half)."""
    pointer = folder / "ACTIVE"
    tmp = pointer.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(fingerprint + "\n", encoding="utf-8")
    tmp.replace(pointer)


def active_model_dir() -> Path:
    """The active model's directory; a :class:`ConfigError` saying how to train one if none is."""
    pointer = checks_cache() / "ACTIVE"
    fingerprint = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    path = model_dir(fingerprint) if fingerprint else None
    if path is None or not (path / "checks.json").is_file():
        raise ConfigError(
            f"no trained entailment checker in {checks_cache()}: run `python benchmarks/train_checker.py` "
            "(a few minutes on two cores; add --data DIR for the stronger recipe)"
        )
    return path
