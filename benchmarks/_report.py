"""The ``--json OUT`` option every benchmark shares: its figures as JSON, for reruns on other data."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the figures here as JSON")


def write_json(path: Path | None, figures: Mapping[str, Any]) -> None:
    """Write ``figures`` with what a reader needs to compare runs: the command and the machine's load."""
    if path is None:
        return
    report = {
        **figures,
        "_run": {
            "argv": sys.argv,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"figures written to {path}", file=sys.stderr)
