"""Without ray installed, ``engine = "ray"`` fails with how to install it (runs with or without ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from grounded.errors import ConfigError
from grounded.ingest.ray_engine import require_ray
from tests.conftest import write_topics

ROOT = Path(__file__).resolve().parents[3]


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what a missing package looks like to import
    with pytest.raises(ConfigError, match=r"pip install 'grounded\[ray\]'"):
        require_ray()


@pytest.mark.slow
def test_a_local_ingest_never_imports_ray(tmp_path: Path) -> None:
    write_topics(tmp_path / "docs", ("if",))
    script = (
        "import sys, grounded; kb = grounded.open(sys.argv[1]); kb.ingest(sys.argv[2], source='docs'); "
        "print('ray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "kb"), str(tmp_path / "docs")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines()[-1] == "False"


def test_the_encoder_device_is_chosen_at_run_time() -> None:
    from grounded.experts.embedding import embedding_device

    assert embedding_device(cuda_available=True) == "cuda"
    assert embedding_device(cuda_available=False) == "cpu"
