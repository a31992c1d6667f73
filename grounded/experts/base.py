"""What every expert backend provides: chat messages in, a :class:`Generation` out.

A backend is a factory registered in the ``grounded.experts`` entry-point group; called with an
:class:`~grounded.config.ExpertSpec` it returns a :class:`TextGenerator`. Built-in backends are
registered the same way as third-party ones (see ``pyproject.toml``)::

    [project.entry-points."grounded.experts"]
    my-backend = "my_package.expert:MyGenerator"   # MyGenerator(spec) -> TextGenerator
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from grounded.config import ExpertSpec

__all__ = ["BackendFactory", "Generation", "Message", "TextGenerator"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class Generation:
    """What a generator wrote, with token counts and where the time went."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    prefill_s: float
    decode_s: float
    finish_reason: str = "stop"


@runtime_checkable
class TextGenerator(Protocol):
    """A chat model that decodes greedily: the same messages always give the same text.

    ``fingerprint`` names the exact model (file hash or served model id): it is part of the
    answer cache key, so changing the model never serves a stale answer.
    """

    fingerprint: str

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        """Greedy completion of ``messages``; raises ExpertError / ExpertTimeout."""
        ...


BackendFactory = Callable[[ExpertSpec], TextGenerator]
