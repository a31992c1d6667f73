"""What every expert backend provides: chat messages in, a :class:`Generation` out.

Backends that can also constrain their output to a JSON schema implement
:class:`StructuredGenerator`: ``generate_json`` (one JSON value matching a schema) and
``generate_tool_calls`` (function calls, each matching its tool's parameter schema). Local
backends constrain decoding itself (a grammar compiled from the schema masks the logits);
OpenAI-compatible servers get their native ``tools`` / ``response_format`` requests. Either
way, what comes back has been parsed and validated, or an ``ExpertError`` says why not.

A backend is a factory registered in the ``grounded.experts`` entry-point group; called with an
:class:`~grounded.config.ExpertSpec` it returns a :class:`TextGenerator`. Built-in backends are
registered the same way as third-party ones (see ``pyproject.toml``)::

    [project.entry-points."grounded.experts"]
    my-backend = "my_package.expert:MyGenerator"   # MyGenerator(spec) -> TextGenerator
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from grounded.config import ExpertSpec

__all__ = [
    "BackendFactory",
    "FunctionSchema",
    "Generation",
    "GrammarGenerator",
    "JsonGeneration",
    "Message",
    "StructuredGenerator",
    "TextGenerator",
    "ToolCallRequest",
    "ToolCalls",
]


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


@dataclass(frozen=True, slots=True)
class JsonGeneration:
    """A JSON value a generator wrote under a schema (already parsed and validated)."""

    value: Any
    generation: Generation


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """One function call a model asked for: a tool name and arguments valid for its schema."""

    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """The calls a generator chose, in order, and the generation that chose them."""

    calls: tuple[ToolCallRequest, ...]
    generation: Generation


class FunctionSchema(Protocol):
    """What a model is shown of a function: :class:`grounded.tools.ToolSpec` is one."""

    @property
    def name(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def parameters(self) -> dict[str, Any]: ...


@runtime_checkable
class StructuredGenerator(TextGenerator, Protocol):
    """A generator whose output can be held to a JSON schema (the ``tool_call`` task needs one).

    >>> expert = get_expert("tool_call", settings)                                  # doctest: +SKIP
    >>> expert.generate_tool_calls(messages, [search.spec], max_calls=2, max_tokens=128).calls
    (ToolCallRequest(name='search', arguments={'query': 'capital of Texas'}),)
    """

    def generate_json(
        self,
        messages: Sequence[Message],
        schema: Mapping[str, Any],
        *,
        max_tokens: int,
        name: str = "output",
        timeout_s: float | None = None,
    ) -> JsonGeneration:
        """Greedy decoding constrained to ``schema``; raises ExpertError when the value cannot be completed."""
        ...

    def generate_tool_calls(
        self,
        messages: Sequence[Message],
        tools: Sequence[FunctionSchema],
        *,
        max_calls: int,
        max_tokens: int,
        timeout_s: float | None = None,
    ) -> ToolCalls:
        """One to ``max_calls`` calls of ``tools``, each with arguments valid for its tool's schema."""
        ...


@runtime_checkable
class GrammarGenerator(TextGenerator, Protocol):
    """A generator that can decode under a grammar (GBNF): text-to-SQL uses it to write only valid SQL.

    Local backends implement it; an OpenAI-compatible server has no portable grammar parameter.
    """

    def generate_grammar(
        self, messages: Sequence[Message], grammar: str, *, max_tokens: int, timeout_s: float | None = None
    ) -> Generation:
        """Greedy decoding in which every token continues a string of ``grammar`` (root rule ``root``).

        The text is a complete string of the grammar unless ``finish_reason`` is ``"length"``.
        """
        ...


BackendFactory = Callable[[ExpertSpec], TextGenerator]
