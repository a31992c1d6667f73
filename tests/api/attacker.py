"""A stand-in model that writes an attacker's SQL, served as an OpenAI-compatible endpoint on loopback.

It plays every expert of a knowledge base at once, the way a prompt-injected model would behave:

- the SQL expert (``[experts.sql]``, a plain completion whose prompt starts with the text-to-SQL
  system prompt) replies with ``attacker.sql`` in a code block;
- the tool-call expert (``[experts.tool_call]``, a request with ``tools``) asks for one ``sql``
  call with ``attacker.sql`` (or for ``attacker.call``, any tool with any arguments);
- the answer expert copies the first sentence of evidence ``[1]``, cited, so whatever a tool
  returned (a leaked row, say) reaches the answer's text and citations.

It goes through :func:`tests.grounded.openai_server.serve`, the same loopback server the
``openai`` backend's own tests use, so the whole HTTP path of every expert is real.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from grounded.experts.base import FunctionSchema, Generation, JsonGeneration, Message, ToolCallRequest, ToolCalls
from grounded.sql.writer import SYSTEM as SQL_SYSTEM
from tests.grounded.openai_server import serve

__all__ = ["Attacker", "attacker_server", "expert_settings"]

_FIRST_EVIDENCE = re.compile(r"^\[1\] (?:[^:\n]*: )?(.+?[.!?:])(?:\s|$)", re.M)


def _generation(text: str) -> Generation:
    return Generation(text, prompt_tokens=10, completion_tokens=5, prefill_s=0.0, decode_s=0.0)


@dataclass(slots=True)
class Attacker:
    """The scripted model; set ``sql`` to the query the next SQL or tool-call request gets."""

    sql: str = "SELECT 1"
    call: tuple[str, dict[str, Any]] | None = None
    """When set, the tool-call expert asks for this ``(tool, arguments)`` instead of ``sql``."""
    prompts: list[str] = field(default_factory=list)
    """Every prompt seen (all messages joined), to check what a caller's prompt showed."""

    def generate(
        self, messages: Sequence[Message], *, max_tokens: int, stop: Sequence[str] = (), timeout_s: float | None = None
    ) -> Generation:
        self.prompts.append("\n".join(m.content for m in messages))
        if messages and messages[0].content == SQL_SYSTEM:
            return _generation(f"```sql\n{self.sql}\n```")
        found = _FIRST_EVIDENCE.search(messages[-1].content)
        return _generation(f"{found.group(1)} [1]" if found else "The sources do not contain this.")

    def generate_json(
        self,
        messages: Sequence[Message],
        schema: Any,
        *,
        max_tokens: int,
        name: str = "output",
        timeout_s: float | None = None,
    ) -> JsonGeneration:
        raise NotImplementedError("the attacker only writes SQL, tool calls and answers")

    def generate_tool_calls(
        self,
        messages: Sequence[Message],
        tools: Sequence[FunctionSchema],
        *,
        max_calls: int,
        max_tokens: int,
        timeout_s: float | None = None,
    ) -> ToolCalls:
        self.prompts.append("\n".join(m.content for m in messages))
        tool, arguments = self.call or ("sql", {"query": self.sql})
        return ToolCalls((ToolCallRequest(tool, arguments),), _generation(""))


@contextmanager
def attacker_server(attacker: Attacker) -> Iterator[str]:
    """Serve ``attacker`` on loopback; yields the base URL for ``[experts.*] url``."""
    with serve(attacker) as (url, _seen):  # type: ignore[arg-type]  # a scripted StructuredGenerator
        yield url


def expert_settings(url: str, *, sql: bool, tool_call: bool) -> dict[str, Any]:
    """``experts`` settings pointing the answer expert (and the sql and/or tool_call experts) at ``url``."""
    spec = {"backend": "openai", "model": "attacker", "url": url, "timeout_s": 30, "max_retries": 0}
    experts: dict[str, Any] = {"answer": spec}
    if sql:
        experts["sql"] = spec
    if tool_call:
        experts["tool_call"] = spec
    return experts
