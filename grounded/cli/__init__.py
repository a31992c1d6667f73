"""Command-line interface: ``grounded ingest | search | serve | ...``."""

from __future__ import annotations

from grounded.cli import ask as _ask  # noqa: F401  (registers `grounded ask`)
from grounded.cli import demo, ingest, search, serve  # noqa: F401  (each module registers its commands)
from grounded.cli import keys as _keys  # noqa: F401  (registers `grounded keys`)
from grounded.cli import mcp_server as _mcp  # noqa: F401  (registers `grounded mcp`)
from grounded.cli import optimize as _optimize  # noqa: F401  (registers `grounded optimize`)
from grounded.cli import refresh as _refresh  # noqa: F401  (registers `grounded refresh` and `grounded scheduler`)
from grounded.cli import sql as _sql  # noqa: F401  (registers `grounded sql`)
from grounded.cli import sync as _sync  # noqa: F401  (registers `grounded sync`)
from grounded.cli import tools as _tools  # noqa: F401  (registers `grounded tools`)
from grounded.cli import tune as _tune  # noqa: F401  (registers `grounded tune`)
from grounded.cli import tune_answerability as _tune_answerability  # noqa: F401  (registers `grounded tune answerability`)
from grounded.cli import tune_checker as _tune_checker  # noqa: F401  (registers `grounded tune checker`)
from grounded.cli import tune_reranker as _tune_reranker  # noqa: F401  (registers `grounded tune reranker`)
from grounded.cli import tune_toolgate as _tune_toolgate  # noqa: F401  (registers `grounded tune toolgate`)
from grounded.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``grounded`` console script."""
    app()
