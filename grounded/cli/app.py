"""The ``grounded`` command: a typer app that command modules add themselves to.

Every command turns grounded's errors into one line on stderr and a non-zero exit code
(2 for bad input or configuration, 1 for everything else); nothing is half-written.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from grounded.errors import ConfigError, GroundedError, InvalidRequest

if TYPE_CHECKING:
    from grounded.ingest.sync import ProgressFactory
    from grounded.kb import KnowledgeBase

__all__ = [
    "KBOption",
    "app",
    "console",
    "err_console",
    "fail",
    "handle_errors",
    "knowledge_base",
    "progress_factory",
    "silence_library_progress",
]

app = typer.Typer(
    name="grounded",
    help="A retrieval-grounded knowledge server: ingest, search, ask and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

KBOption = Annotated[
    Path | None,
    typer.Option("--kb", help="Knowledge-base directory (default: kb_path from config, ./kb).", show_default=False),
]

EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine", help="Where to read, chunk and embed: local or ray (default: [scale] engine).", show_default=False
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address", help="Ray cluster to join with --engine ray (auto, ray://host:10001).", show_default=False
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, help="Embedding actors with --engine ray (default: [scale] workers).", show_default=False
    ),
]


def scale_overrides(engine: str | None, address: str | None, workers: int | None) -> dict[str, Any]:
    """Settings overrides for the ``[scale]`` options of ingest, sync and refresh (only those given)."""
    scale = {k: v for k, v in (("engine", engine), ("address", address), ("workers", workers)) if v is not None}
    return {"scale": scale} if scale else {}


P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Map grounded's errors (and Ctrl-C) to a one-line message and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (InvalidRequest, ConfigError) as exc:
            raise fail(str(exc), code=2) from None
        except GroundedError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted; nothing was published", code=130) from None

    return wrapper


def knowledge_base(path: Path | None, *, create: bool = False, **overrides: Any) -> KnowledgeBase:
    """The knowledge base for a command (``create`` only for commands that write); imported on
    first use so ``grounded --help`` stays fast."""
    from grounded.kb import open_kb

    return open_kb(path, create=create, **overrides)


def silence_library_progress() -> None:
    """Turn off the progress bars of huggingface_hub and transformers, loaded now or later."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by both when they are first imported
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]

        disable_progress_bars()


def progress_factory(enabled: bool) -> ProgressFactory | None:
    """A tqdm progress bar factory on stderr, or None when disabled or not a terminal.

    Disabled (``--no-progress``) also silences the bars libraries draw while loading a model
    (transformers' "Loading weights"), so the command prints only its own output.
    """
    if not enabled:
        silence_library_progress()
        return None
    from tqdm import tqdm

    def make(total: int | None, desc: str) -> Any:
        return tqdm(total=total, desc=desc, unit="doc", file=sys.stderr, dynamic_ncols=True)

    return make
