"""``grounded ask "..."``: a cited, verified answer with its numbered sources."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from grounded.cli.app import KBOption, app, console, fail, handle_errors, knowledge_base


@app.command()
@handle_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    kb: KBOption = None,
    k: Annotated[int | None, typer.Option("-k", "--k", help="Evidence passages to read.")] = None,
    filters: Annotated[
        str | None, typer.Option("--filter", help='Filters as JSON, e.g. \'{"source": "docs"}\'.')
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the answer cache.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Also show how the answer was checked: the gate's decision and each drafted sentence's "
            "entailment score and fate (answers the cache returns carry no checks: add --no-cache).",
        ),
    ] = False,
) -> None:
    """Answer a question from the knowledge base; every sentence cites its source."""
    try:
        parsed = json.loads(filters) if filters else None
    except ValueError as exc:
        raise fail(f'--filter is not valid JSON ({exc}); example: --filter \'{{"source": "docs"}}\'', 2) from None
    knowledge = knowledge_base(kb)
    answer = knowledge.ask(question, k=k, filters=parsed, use_cache=not no_cache)
    if as_json:
        console.print_json(json.dumps(answer.to_dict(), default=str))
        return
    if not answer.grounded:
        console.print("[dim](not from the sources: a conversational reply)[/]", highlight=False)
    if answer.abstained:
        console.print(f"[bold yellow]{answer.text}[/]", highlight=False)
        if answer.closest is not None:
            cid = answer.closest.citations[0]
            console.print(f"Closest evidence: “{answer.closest.text}” [{cid}]", highlight=False, soft_wrap=True)
    else:
        console.print(answer.text, highlight=False, soft_wrap=True)
    cited = answer.cited()
    if cited:
        console.print("\n[bold]Sources[/]")
    for c in cited:
        synced = f", synced {c.synced_at:%Y-%m-%d %H:%M}" if c.synced_at else ""
        console.print(
            f"  [{c.id}] {c.title or c.doc_id} — {c.uri or c.doc_id} (chars {c.start}-{c.end}; {c.source}{synced})",
            highlight=False,
            soft_wrap=True,
        )
    checks = answer.trace.get("checks") if isinstance(answer.trace, dict) else None
    if isinstance(checks, dict) and checks.get("warning"):
        console.print(f"[yellow]warning: {checks['warning']}[/]", highlight=False, soft_wrap=True)
    if explain:
        _explain(answer.trace, answer.cached)
    took = answer.timings.get("total_ms", 0.0) / 1000
    console.print(
        f"[dim]index version {answer.index_version} · {took:.1f} s{' · cached' if answer.cached else ''}[/]",
        highlight=False,
    )


def _explain(trace: Mapping[str, Any], cached: bool) -> None:
    """The checks behind an answer: mode, the gate's decision, each drafted sentence's scores and fate."""
    console.print("\n[bold]Checks[/]")
    checks = trace.get("checks")
    if not isinstance(checks, Mapping):
        note = "a cached answer: ask again with --no-cache" if cached else "none (a conversational reply)"
        console.print(f"  {note}", highlight=False)
        return
    if checks.get("mode") == "model":
        console.print(
            f"  trained checks {checks.get('model')} (support threshold {checks.get('support_threshold')}, "
            f"gate threshold {checks.get('gate_threshold')}, answers-the-question threshold "
            f"{checks.get('relevance_threshold')})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print("  lexical checks (word overlap, embedding similarity)", highlight=False)
    gate = checks.get("gate")
    if isinstance(gate, Mapping):
        verdict = "answerable" if gate.get("answerable") else "not answerable: abstain without writing"
        console.print(f"  gate: {verdict} (p={gate.get('probability'):.3f})", highlight=False)
        if "window" in gate:  # the answer decision weighed the gate with the best sentence and the similarity
            console.print(
                f"    answer decision (threshold {gate.get('threshold')}): gate {gate['window']:.3f}, best sentence "
                f"answers {gate.get('relevance', 0.0):.3f}, evidence similarity {gate.get('similarity', 0.0):.3f}",
                highlight=False,
            )
    elif "best_similarity" in checks:
        console.print(
            f"  evidence similarity {checks['best_similarity']:.3f} (abstain below {checks.get('min_evidence_similarity')})",
            highlight=False,
        )
    for n, sentence in enumerate(checks.get("sentences") or [], start=1):
        scores = []
        if sentence.get("support") is not None:
            scores.append(f"entailment {sentence['support']:.3f}")
        if sentence.get("relevance") is not None:
            scores.append(f"answers the question {sentence['relevance']:.3f}")
        if sentence.get("word_support") is not None:
            scores.append(f"words {sentence['word_support']:.2f}")
        cites = "".join(f"[{c}]" for c in sentence.get("citations") or [])
        console.print(f"  {n}. “{sentence.get('text')}” {cites}", highlight=False, soft_wrap=True)
        console.print(f"     {', '.join(scores)} → {sentence.get('decision')}", highlight=False, soft_wrap=True)
        if sentence.get("replacement"):
            console.print(f"     quoted instead: “{sentence['replacement']}”", highlight=False, soft_wrap=True)
