"""Coverage per package after ``make test``, and the floor it must hold.

``make test`` runs pytest under ``coverage run`` (subprocesses too: ``grounded`` commands, server
workers); this prints one row per package (``grounded/api``, ``connectors``, ...) and the total,
then exits 1 when the total is under ``fail_under`` in ``[tool.coverage.report]`` of pyproject.toml.
The floor was set from a measured run (docs/development.md, "Coverage"); raise it when coverage
rises, never lower it to make a run pass.

    .venv/bin/python -m tests.coverage_report [--data .coverage]
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

from coverage import Coverage

ROOT = Path(__file__).resolve().parents[1]


def package_of(path: Path) -> str:
    """``grounded/api/routes/query.py`` -> ``grounded/api``; top-level modules stay with their package."""
    parts = path.relative_to(ROOT).parts
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def table(data_file: Path) -> tuple[list[tuple[str, int, int]], int, int]:
    """(package, statements, missed) rows, and the totals."""
    cov = Coverage(data_file=str(data_file), config_file=str(ROOT / "pyproject.toml"))
    cov.load()
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name in cov.get_data().measured_files():
        path = Path(name)
        if ROOT not in path.parents:
            continue
        _, statements, _, missing, _ = cov.analysis2(name)
        row = sums[package_of(path)]
        row[0] += len(statements)
        row[1] += len(missing)
    rows = sorted((pkg, s, m) for pkg, (s, m) in sums.items())
    return rows, sum(s for _, s, _ in rows), sum(m for _, _, m in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / ".coverage", help="The combined coverage data file.")
    args = parser.parse_args()
    floor = float(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["coverage"]["report"]["fail_under"])
    rows, statements, missed = table(args.data)
    if not statements:
        print(f"no coverage data in {args.data}", file=sys.stderr)
        return 1
    print(f"{'package':<24} {'statements':>10} {'missed':>8} {'cover':>7}")
    for package, s, m in rows:
        print(f"{package:<24} {s:>10} {m:>8} {100 * (s - m) / s:>6.1f}%")
    total = 100 * (statements - missed) / statements
    print(f"{'TOTAL':<24} {statements:>10} {missed:>8} {total:>6.1f}%")
    if total < floor:
        print(f"coverage {total:.1f}% is under the floor of {floor:g}% (pyproject.toml)", file=sys.stderr)
        return 1
    print(f"coverage {total:.1f}% holds the floor of {floor:g}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
