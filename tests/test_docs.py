"""The documentation stays true: links resolve, documented commands exist, examples run.

- every relative link in README.md, docs/*.md and benchmarks/RESULTS.md points to an existing
  file, and its ``#anchor`` to a heading of that file (GitHub's heading ids);
- every ``grounded ...`` command and option written in the docs exists in the CLI;
- the plugin examples of docs/plugins.md, installed as a plugin distribution, work through the
  real registries (the connector through the contract suite every connector passes);
- ``mkdocs build --strict`` succeeds (nav complete, anchors between pages resolve).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from connectors.testing import ConnectorContract

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md", *DOCS.glob("*.md")])
README_MAX_LINES = 250

_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_SPAN = re.compile(r"`[^`]*`")


def _prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced code blocks, with inline code removed."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, _CODE_SPAN.sub("", line)


def github_slug(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Heading ids of a Markdown file (duplicates get -1, -2 as on GitHub)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def _links() -> list[tuple[Path, int, str]]:
    out = []
    for page in PAGES:
        for number, line in _prose_lines(page.read_text(encoding="utf-8")):
            out.extend((page, number, target) for target in _LINK.findall(line))
    return out


LINKS = _links()


def test_pages_exist_and_have_links() -> None:
    assert (DOCS / "index.md").is_file()
    assert len(LINKS) > 50, "the link parser found suspiciously few links"


def link_problem(page: Path, target: str) -> str | None:
    """Why ``target``, linked from ``page``, does not resolve (``None`` when it does)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        return None
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    if not resolved.exists():
        return f"link {target!r} points to {resolved}, which does not exist"
    if anchor and resolved.suffix != ".md":
        return f"anchor on a non-Markdown target {target!r}"
    if anchor and anchor not in anchors(resolved):
        return f"{resolved.name} has no heading with id {anchor!r}; ids: {sorted(anchors(resolved))}"
    return None


@pytest.mark.parametrize(("page", "line", "target"), LINKS, ids=[f"{p.relative_to(ROOT)}:{n}:{t}" for p, n, t in LINKS])
def test_link_resolves(page: Path, line: int, target: str) -> None:
    problem = link_problem(page, target)
    assert problem is None, f"{page.relative_to(ROOT)}:{line}: {problem}"


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "a.md"
    page.write_text("# Title\n\n## Two words\n\n```text\n## not a heading\n```\n")
    assert link_problem(page, "#two-words") is None
    assert link_problem(page, "a.md#title") is None
    assert link_problem(page, "#not-a-heading") is not None
    assert link_problem(page, "missing.md") is not None
    assert link_problem(page, "https://example.com/missing") is None


def test_github_slugs() -> None:
    assert github_slug("SQL for people: `kb.sql`") == "sql-for-people-kbsql"
    assert github_slug("2026-11-27 09:56 · Tuning: SmolLM2") == "2026-11-27-0956--tuning-smollm2"
    assert github_slug("`[experts.<task>]`") == "expertstask"


def test_readme_is_short_and_links_every_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES, "the README is a five-minute start: move detail to docs/"
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"(docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"


def test_every_docs_page_is_in_the_site_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        assert f": {page.name}" in nav, f"mkdocs.yml's nav lacks {page.name}"


# -- commands and options --------------------------------------------------------------------


def _cli() -> Any:
    """The ``grounded`` command tree (typer's own click: groups have ``commands``)."""
    from grounded.cli import app

    group = typer.main.get_command(app)
    assert hasattr(group, "commands")
    return group


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def _shell_lines(text: str) -> Iterator[str]:
    """Lines of the ``bash`` (or unlabelled) code blocks of a page."""
    shell = None
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            shell = None if shell is not None else fence.group(1) in ("", "bash", "sh", "console")
            continue
        if shell:
            yield line


def _command_mentions() -> list[tuple[str, str]]:
    """``grounded ...`` invocations written in the docs: inline code and shell lines."""
    found: list[tuple[str, str]] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        where = page.relative_to(ROOT).as_posix()
        spans = [s.strip("`") for s in _CODE_SPAN.findall(text)]
        shell = [line.split(" #")[0] for line in _shell_lines(text) if re.match(r"^\s*(\.venv/bin/)?grounded ", line)]
        for snippet in [*spans, *shell]:
            for part in re.split(r"\s+·\s+|;\s+", snippet):
                match = re.match(r"^(?:\.venv/bin/)?grounded(\s.*)?$", part.strip())
                if match:
                    found.append((where, part.strip()))
    return found


def _check_invocation(text: str) -> list[str]:
    """Problems with one documented invocation: an unknown command or option."""
    tokens = text.replace("\\|", "|").replace("[", " ").replace("]", " ").split()[1:]
    command = _cli()
    path = ["grounded"]
    while _is_group(command) and tokens and tokens[0] in command.commands:
        path.append(tokens[0])
        command = command.commands[tokens.pop(0)]
    if _is_group(command) and tokens and re.match(r"^[a-z]+$", tokens[0]):
        return [f"{' '.join(path)} has no command {tokens[0]!r} (in `{text}`)"]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    problems = []
    for token in tokens:
        for option in re.split(r"[|/]", token):
            option = option.split("=")[0].rstrip(".,;:)")
            if re.match(r"^--?[a-z]", option) and option not in known:
                problems.append(f"{' '.join(path)} has no option {option!r} (in `{text}`)")
    return problems


COMMANDS = _command_mentions()


def test_docs_mention_every_command() -> None:
    written = " ".join(text for _, text in COMMANDS)
    for name, command in _cli().commands.items():
        assert f"grounded {name}" in written, f"no page shows `grounded {name}`"
        if _is_group(command):
            for sub in command.commands:
                assert re.search(rf"grounded {name} [^`]*\b{sub}\b", written), f"no page shows `grounded {name} {sub}`"


def test_the_readme_command_table_lists_every_command() -> None:
    """Issue 25, item 5: a command missing from the README's table (``grounded sync`` was) fails here."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `grounded ")]
    listed = {m for row in rows for m in re.findall(r"`grounded ([a-z-]+)", row)}
    assert sorted(set(_cli().commands) - listed) == []


@pytest.mark.parametrize(("page", "text"), COMMANDS, ids=[f"{p}:{t[:60]}" for p, t in COMMANDS])
def test_documented_commands_and_options_exist(page: str, text: str) -> None:
    assert not _check_invocation(text), f"{page}: " + "; ".join(_check_invocation(text))


def test_the_option_check_can_fail() -> None:
    assert _check_invocation("grounded search x --colour red")
    assert _check_invocation("grounded keys rotate")
    assert not _check_invocation("grounded tune export NAME --out F.gguf --type q8_0")


# -- the plugin examples of docs/plugins.md ----------------------------------------------------


def _plugin_blocks() -> tuple[dict[str, str], dict[str, Any]]:
    """The ``# my_notes/...`` Python blocks by file, and the entry points of the TOML block."""
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    files: dict[str, str] = {}
    entry_points: dict[str, Any] = {}
    for lang, body in re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.M | re.S):
        first = body.splitlines()[0]
        if lang == "python" and first.startswith("# my_notes/"):
            files[first[2:].strip()] = body
        if lang == "toml" and "[project.entry-points." in body:
            entry_points = tomllib.loads(body)["project"]["entry-points"]
    return files, entry_points


@pytest.fixture(scope="module")
def docs_plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Install the page's package as a plugin distribution on sys.path, as pip would."""
    from grounded.experts import registry as experts
    from grounded.tools import registry as tools

    files, entry_points = _plugin_blocks()
    assert set(files) == {"my_notes/connector.py", "my_notes/tools.py", "my_notes/expert.py"}
    assert set(entry_points) == {"grounded.connectors", "grounded.tools", "grounded.experts"}
    site = tmp_path_factory.mktemp("docs-plugin-site")
    (site / "my_notes").mkdir()
    (site / "my_notes" / "__init__.py").write_text("")
    for name, body in files.items():
        (site / name).write_text(body, encoding="utf-8")
    dist = site / "my_notes-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-notes\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in eps.items())
            for group, eps in entry_points.items()
        )
    )
    sys.path.insert(0, str(site))
    tools._plugins = None  # the tool registry caches what it loaded
    experts.clear()
    try:
        yield entry_points
    finally:
        sys.path.remove(str(site))
        for module in [m for m in sys.modules if m == "my_notes" or m.startswith("my_notes.")]:
            del sys.modules[module]
        tools._plugins = None
        experts.clear()
        shutil.rmtree(site, ignore_errors=True)


def test_every_plugin_group_is_documented() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["entry-points"]
    page = (DOCS / "plugins.md").read_text(encoding="utf-8")
    _, example = _plugin_blocks()
    for group in declared:
        assert f"`{group}`" in page, f"docs/plugins.md does not document the entry-point group {group!r}"
        assert group in example, f"docs/plugins.md has no example for {group!r}"


class TestNotesConnectorFromDocs(ConnectorContract):
    """The docs' connector passes the contract suite every connector passes."""

    entry_point = "notes"

    @pytest.fixture
    def connector(self, docs_plugins: dict[str, Any], tmp_path: Path) -> Any:
        from connectors.registry import load_connector

        (tmp_path / "cheap.note").write_text("Ideas are cheap. Shipping them is the work.", encoding="utf-8")
        (tmp_path / "notes.txt").write_text("not a note", encoding="utf-8")
        cls: Any = load_connector("notes")
        return cls(cls.Config(folder=tmp_path))

    @pytest.fixture
    def failing_connector(self, docs_plugins: dict[str, Any], tmp_path: Path) -> Any:
        from connectors.registry import load_connector

        cls: Any = load_connector("notes")
        return cls(cls.Config(folder=tmp_path / "missing"))


def test_docs_tool_runs_through_the_registry(docs_plugins: dict[str, Any]) -> None:
    from grounded.tools import ToolContext, get_tool

    tool = get_tool("word_count")
    assert tool.spec.parameters["required"] == ["text"]
    assert tool.call({"text": "ideas are cheap"}, ToolContext()).text == "3 words"
    refused = tool.call({"text": ""}, ToolContext())
    assert refused.refused
    assert not refused.ok


@pytest.mark.slow
def test_docs_plugins_answer_a_question_end_to_end(docs_plugins: dict[str, Any], tmp_path: Path) -> None:
    """A configured `notes` source, synced, answered by the `first-sentence` backend."""
    import grounded
    from grounded.ingest.sources import sync_sources

    folder = tmp_path / "ideas"
    folder.mkdir()
    (folder / "cheap.note").write_text(
        "Ideas are cheap because anyone can have one. Shipping them is the work.", encoding="utf-8"
    )
    (folder / "tea.note").write_text("Green tea is steeped at about eighty degrees.", encoding="utf-8")
    kb = grounded.open(
        tmp_path / "kb",
        sources={"ideas": {"type": "notes", "params": {"folder": str(folder)}}},
        experts={"answer": {"backend": "first-sentence", "model": "none"}},
    )
    [result] = sync_sources(kb.store, kb.settings)
    assert result.ok, result.error
    assert kb.stats()["documents"] == 2
    answer = kb.ask("why are ideas cheap?", use_cache=False)
    assert answer.model == "first-sentence:none"
    assert not answer.abstained, answer
    assert answer.cited()[0].source == "ideas"
    assert "Ideas are cheap" in answer.text


# -- the site ------------------------------------------------------------------------------------


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    assert mkdocs.exists(), "mkdocs is part of the dev install (pip install -e '.[dev]')"
    done = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


# -- the module map ------------------------------------------------------------------------------

MAP_EXEMPT = {"grounded/cli"}
"""Folders whose modules the map names as a group ("one module per command")."""


def _module_map() -> str:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    start = text.index("## Module map")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _mapped_paths(text: str) -> list[str]:
    """Paths a module map names: ``dir/file.py``, ``dir/``, and bare ``file.py`` after a ``dir/...``."""
    paths = []
    for row in text.splitlines():
        folder = ""
        for token in re.findall(r"`([^`]+)`", row):
            if re.fullmatch(r"[\w./]+/[\w./]*", token):
                paths.append(token)
                folder = token if token.endswith("/") else token.rsplit("/", 1)[0] + "/"
            elif re.fullmatch(r"\w+\.py", token) and folder:
                paths.append(folder + token)
    return paths


@pytest.mark.parametrize("page", ["docs/architecture.md", "README.md"])
def test_module_map_names_existing_modules(page: str) -> None:
    text = _module_map() if page == "docs/architecture.md" else (ROOT / page).read_text(encoding="utf-8")
    if page == "README.md":
        text = text[text.index("## How it works") : text.index("## Commands")]
    paths = _mapped_paths(text)
    assert len(paths) > 20
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"{page}'s module map names modules that do not exist (update it): {missing}"


def test_module_map_names_every_module() -> None:
    text = _module_map()
    named = set(_mapped_paths(text))
    words = set(re.findall(r"`([^`]+)`", text))
    missing = []
    for package in ("grounded", "connectors", "indexes"):
        for module in sorted((ROOT / package).rglob("*.py")):
            rel = module.relative_to(ROOT).as_posix()
            folder = rel.rsplit("/", 1)[0]
            if module.name == "__init__.py" or folder in MAP_EXEMPT:
                continue
            if rel in named or module.name in words or module.stem in words:
                continue
            missing.append(rel)
    assert not missing, f"docs/architecture.md's module map does not name: {missing}"
