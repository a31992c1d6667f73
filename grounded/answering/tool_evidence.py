"""Tool results as evidence: numbered citations with provenance, and numbers held to them.

Every call's result becomes a :class:`~grounded.answering.types.Citation` (failures too: they
are evidence of what could not be found), cited and verified like passages. A sentence citing
tool evidence is kept only when every number it writes is written in that evidence
(:func:`exact_numbers`).
"""

from __future__ import annotations

import re
from datetime import datetime

from grounded.answering.types import AnswerSentence, Citation
from grounded.grounding.executor import Call, Execution
from grounded.tools import ToolResult

__all__ = ["exact_numbers", "numbers_in", "tool_citation", "tool_citations"]

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")


def numbers_in(text: str) -> set[str]:
    """Numbers written in ``text``, thousands separators removed (``1,234.50`` -> ``1234.50``)."""
    return {m.group(0).replace(",", "") for m in _NUMBER.finditer(text)}


def tool_citation(cid: int, call: Call, result: ToolResult, synced: dict[str, datetime | None]) -> Citation:
    """A tool result as numbered evidence; failures are evidence too (of what could not be found)."""
    prov = dict(result.provenance)
    if call.tool == "sql":
        # The query is in the title: the verifier counts title words as support for a sentence.
        title = f"SQL over {', '.join(prov.get('tables', [])) or 'the mirrored tables'}: {prov.get('query', '')}"
        uri = f"sql:{prov.get('query', call.arguments.get('query', ''))}"
    elif call.tool == "api":
        title = f"Live API {prov.get('source', '')}/{prov.get('endpoint', '')}"
        uri = str(prov.get("uri", ""))
    else:
        title = f"{call.tool} tool"
        uri = str(prov.get("uri") or f"{call.tool}:{call.id}")  # a live call's own URL when it has one
    source = str(prov.get("source") or call.tool)
    synced_at = synced.get(source.split(",")[0])
    if prov.get("fetched_at"):
        synced_at = datetime.fromisoformat(str(prov["fetched_at"]))
    prov.update({"call": call.id, "ok": result.ok, "error": result.error})
    return Citation(
        id=cid,
        chunk_id=-cid,
        doc_id=f"tool:{call.tool}:{call.id}",
        title=title,
        uri=uri,
        start=0,
        end=len(result.text),
        text=result.text,
        source=source,
        synced_at=synced_at,
        score=1.0 if result.ok else 0.0,
        provenance=prov,
    )


def tool_citations(execution: Execution | None, synced: dict[str, datetime | None], start: int = 1) -> list[Citation]:
    """Every call's result as evidence, in plan order; ``search`` hits become passage citations."""
    out: list[Citation] = []
    if execution is None:
        return out
    for call, result in execution.ordered():
        if call.tool == "search" and result.ok:
            for hit in result.data["hits"]:
                out.append(Citation.from_hit(start + len(out), hit, synced.get(hit.source)))
        else:
            out.append(tool_citation(start + len(out), call, result, synced))
    return out


def exact_numbers(sentences: list[AnswerSentence], citations: tuple[Citation, ...]) -> list[AnswerSentence]:
    """Keep a sentence citing tool evidence only if every number in it is written in that evidence.

    A sentence that fails is replaced by the result's own first row, quoted. When nothing is
    left but a tool answered, the answer is that result, quoted: a structured question is
    answered from the table, never abstained on because the writer was unsure.
    """
    by_id = {c.id: c for c in citations}
    tools = [c for c in citations if c.provenance and c.provenance.get("ok")]
    out: list[AnswerSentence] = []
    for sentence in sentences:
        cited_tools = [by_id[i] for i in sentence.citations if i in by_id and by_id[i].provenance]
        if not cited_tools:
            out.append(sentence)
            continue
        allowed: set[str] = set()
        for c in (by_id[i] for i in sentence.citations if i in by_id):
            allowed |= numbers_in(c.text)
        if numbers_in(sentence.text) <= allowed:
            out.append(sentence)
        else:
            quote = _result_quote(cited_tools[0])
            if quote and all(q.text != quote.text for q in out):
                out.append(quote)
    if not out and tools:
        quote = _result_quote(tools[0])
        if quote is not None:
            out.append(quote)
    return out


def _result_quote(citation: Citation) -> AnswerSentence | None:
    lines = [ln for ln in citation.text.splitlines() if ln.startswith("Row ")] or citation.text.splitlines()[:1]
    if not lines:
        return None
    return AnswerSentence(" ".join(lines[:3]), (citation.id,), quoted=True, support=1.0)
