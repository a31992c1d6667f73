"""A fake answer expert, registered through the real plugin path (an entry point on sys.path).

``FakeGenerator`` answers by copying the first sentence of the first source, cited ``[1]``;
``model = "slow:<seconds>"`` makes it sleep first (and honour the timeout like a real backend).
The ``fake_backend`` fixture writes a ``*.dist-info`` folder with an ``entry_points.txt`` that
registers it in the ``grounded.experts`` group, exactly as an installed plugin would.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Sequence

import pytest

from grounded.config import ExpertSpec
from grounded.errors import ExpertTimeout
from grounded.experts import registry
from grounded.experts.base import Generation, Message

CALLS: list[str] = []


class FakeGenerator:
    """Copies the first sentence of source [1]; deterministic, instant unless ``slow:N``."""

    def __init__(self, spec: ExpertSpec) -> None:
        self.spec = spec
        self.delay = float(spec.model.split(":", 1)[1]) if spec.model.startswith("slow:") else 0.0
        self.fingerprint = f"fake:{spec.model}"

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        CALLS.append(messages[-1].content)
        timeout = timeout_s if timeout_s is not None else self.spec.timeout_s
        if self.delay:
            time.sleep(min(self.delay, timeout))
            if self.delay > timeout:
                raise ExpertTimeout(f"fake expert did not finish within {timeout:g} s")
        match = re.search(r"^\[1\] (?:[^:\n]*: )?(.+?[.!?:])(?:\s|$)", messages[-1].content, re.M)
        text = f"{match.group(1)} [1]" if match else "The sources do not contain this."
        return Generation(text, prompt_tokens=10, completion_tokens=5, prefill_s=0.0, decode_s=0.0)


@pytest.fixture(scope="session")
def fake_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Install the ``fake`` backend as a plugin distribution on sys.path; yields its name."""
    site = tmp_path_factory.mktemp("plugin-site")
    dist = site / "grounded_fake_expert-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: grounded-fake-expert\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[grounded.experts]\nfake = tests.fake_expert:FakeGenerator\n")
    sys.path.insert(0, str(site))
    registry.clear()
    try:
        yield "fake"
    finally:
        sys.path.remove(str(site))
        registry.clear()
