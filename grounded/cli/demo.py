"""``grounded demo``: build a knowledge base from the Python reference topics and serve it."""

from __future__ import annotations

from typing import Annotated

import typer

from grounded.cli.app import KBOption, app, console, handle_errors, knowledge_base, progress_factory

EXAMPLES = (
    ("search", '{"query": "how does the with statement call __exit__", "k": 3}'),
    ("search", '{"query": "operator precedence of not and or", "k": 3, "mode": "bm25"}'),
    ("search", '{"query": "what happens when a generator is closed", "k": 3, "filters": {"source": "python-docs"}}'),
    ("query", '{"query": "What does the with statement call when the block exits?"}'),
)


def _ensure_checks() -> None:
    """Train the default checks recipe when no checks model is active (printing its progress)."""
    from grounded.checks import active_model_dir
    from grounded.errors import ConfigError

    try:
        active_model_dir()
    except ConfigError:
        pass
    else:
        return
    from grounded.checks.recipe import Recipe
    from grounded.checks.train import train

    console.print(
        "[bold]training the entailment checker and answerability gate[/] (default recipe: synthetic pairs from "
        "the Python reference; a few minutes on two cores, once per machine; `grounded tune checker --data DIR` "
        "trains the stronger one)",
        highlight=False,
    )
    result = train(Recipe(), log=lambda m: console.print(f"  {m}", highlight=False))
    console.print(f"checks model ready: {result.path}", highlight=False)


@app.command()
@handle_errors
def demo(
    kb: KBOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    serve: Annotated[bool, typer.Option(help="Start the server after ingesting.")] = True,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Serve a non-loopback address although no API key exists: every peer is an admin.",
        ),
    ] = False,
    topics: Annotated[
        str | None,
        typer.Option(help="Comma-separated topics to ingest (e.g. 'with,pass'); default: all of them (about 90)."),
    ] = None,
    checks: Annotated[
        bool,
        typer.Option(
            help="Train the entailment checker and answerability gate first when none is trained on this machine "
            "(the default recipe, a few minutes, once; without them answers are checked by word overlap only)."
        ),
    ] = True,
) -> None:
    """Ingest the Python language reference (shipped with CPython), train the checks once, print examples, serve."""
    from connectors.pydoc_topics import PydocTopicsConfig, PydocTopicsConnector
    from grounded.cli.serve import check_exposure

    knowledge = knowledge_base(kb, create=True)
    if serve:
        check_exposure(knowledge, host, insecure_no_auth=insecure_no_auth)  # before minutes of ingesting
    chosen = tuple(t.strip() for t in (topics or "").split(",") if t.strip())
    connector = PydocTopicsConnector(PydocTopicsConfig(topics=chosen))
    stats = knowledge.sync("python-docs", connector, progress=progress_factory(True), total=connector.size_hint())
    counts = knowledge.stats()
    console.print(
        f"[bold green]demo knowledge base ready[/] in {knowledge.path}: {counts['documents']} documents, "
        f"{counts['chunks']} chunks, version {counts['version']} "
        f"({stats.chunks_embedded} chunks embedded this run)",
        highlight=False,
    )
    if checks:
        _ensure_checks()
    base = f"http://{host}:{port}"
    console.print("\n[bold]Try these:[/]")
    for route, body in EXAMPLES:
        console.print(
            f"  curl -s {base}/v1/{route} -H 'content-type: application/json' -d '{body}'",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f'  .venv/bin/grounded search "context manager protocol" --kb {knowledge.path}', highlight=False)
    console.print(f"  open {base}/docs for the OpenAPI documentation\n", highlight=False)
    if serve:
        import uvicorn
        from uvicorn.config import LOGGING_CONFIG

        from grounded.api.app import create_app
        from grounded.api.connections import uvicorn_options

        # serve's protections (slow clients), with uvicorn's own console logs and access log for the demo
        options = {**uvicorn_options(knowledge.settings.server), "log_config": LOGGING_CONFIG, "access_log": True}
        uvicorn.run(create_app(knowledge), host=host, port=port, log_level="info", **options)
