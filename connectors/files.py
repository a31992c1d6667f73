"""Read a file or a folder of documents: txt, md, rst, html, pdf, and JSONL (BEIR ``corpus.jsonl``).

Keys are paths relative to the configured root (``notes/a.md``); a JSONL record's key is
``corpus.jsonl#<id>``. Each read is a full scan, so files that disappeared are deleted from the
knowledge base. A file that cannot be read is reported (:class:`Unreadable`) and its documents
already in the knowledge base are kept.

Example::

    connector = FilesConnector(FilesConfig(path=Path("docs")))
    for page in connector.read("files", None):
        ...
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from connectors.base import Cursor, Document, JSONValue, Page, Record, Split, StreamSpec, Unreadable
from grounded.errors import FatalConnectorError, IngestError

__all__ = ["FilesConfig", "FilesConnector", "parse_file"]

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst", ".text"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".jsonl"}


class FilesConfig(BaseModel):
    """A file or folder to read."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    path: Path = Field(description="A file, or a folder read recursively.")
    page_size: int = Field(256, ge=1, description="Documents per page handed to the indexer.")
    id_field: tuple[str, ...] = Field(("_id", "id", "doc_id"), description="JSONL fields tried for the key.")
    text_field: tuple[str, ...] = Field(("text", "contents", "body"), description="JSONL fields tried for text.")
    title_field: str = Field("title", description="JSONL field for the title.")
    follow_symlinks: bool = Field(
        False,
        description="Read files whose symbolic links lead out of the folder (off: such links are skipped, "
        "so a link to /etc/passwd placed in the folder does not make it searchable).",
    )


class FilesConnector:
    """Documents from files on disk."""

    name: ClassVar[str] = "files"
    Config: ClassVar[type[BaseModel]] = FilesConfig

    def __init__(self, config: FilesConfig) -> None:
        self.config = config

    def check(self) -> None:
        path = self.config.path
        if not path.exists():
            raise FatalConnectorError(f"path {str(path)!r} does not exist; give an existing file or folder")
        if path.is_file() and path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise FatalConnectorError(
                f"{str(path)!r} has type {path.suffix or '(none)'!r}; supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"
            )

    def streams(self) -> list[StreamSpec]:
        return [StreamSpec(name="files", kind="documents", full_scan=True)]

    def files(self) -> list[Path]:
        """The files a read will visit, in a stable order.

        A folder's files are read where they lie inside it: a symbolic link whose target is
        outside the folder is skipped (and so removed from the knowledge base if an earlier read
        took it) unless ``follow_symlinks``. The path given itself is the operator's choice and
        may be a link.
        """
        root = self.config.path
        if root.is_file():
            return [root]
        inside = root.resolve()
        return sorted(
            p
            for p in root.rglob("*")
            if p.is_file()
            and p.suffix.lower() in SUPPORTED_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
            and (self.config.follow_symlinks or p.resolve().is_relative_to(inside))
        )

    def outside_links(self) -> list[Path]:
        """Links in the folder that lead out of it and are skipped (empty with ``follow_symlinks``)."""
        root = self.config.path
        if self.config.follow_symlinks or not root.is_dir():
            return []
        inside = root.resolve()
        return sorted(p for p in root.rglob("*") if p.is_symlink() and not p.resolve().is_relative_to(inside))

    def size_hint(self) -> int:
        """Number of files to read (for progress bars)."""
        return len(self.files())

    def read(self, stream: str, cursor: Cursor | None) -> Iterator[Page]:
        self._check_stream(stream)
        self.check()
        root = self._root()
        yield from self._pages((file, file.relative_to(root).as_posix(), None) for file in self.files())

    def splits(self, stream: str, parts: int) -> list[Split]:
        """Runs of files of about equal size, a JSONL file cut into line ranges: ``read_split`` of
        each in order yields the records of :meth:`read` in the same order."""
        self._check_stream(stream)
        self.check()
        root = self._root()
        pieces: list[tuple[str, int, int | None, int]] = []  # (key, first line, end line, weight)
        for file in self.files():
            key = file.relative_to(root).as_posix()
            if file.suffix.lower() != ".jsonl":
                pieces.append((key, 1, None, 1))
                continue
            with file.open("rb") as handle:
                lines = sum(1 for _ in handle)
            step = max(1, -(-lines // max(parts, 1)))
            starts = range(1, max(lines, 1) + 1, step)
            # The last range is open: the count here is of b"\n", and the read may see more lines.
            pieces.extend(
                (key, lo, lo + step if lo + step <= lines else None, min(step, lines - lo + 1)) for lo in starts
            )
        total = sum(p[3] for p in pieces)
        target = max(1, -(-total // max(parts, 1)))
        runs: list[JSONValue] = []
        out: list[Split] = []
        weight = 0
        for key, lo, hi, size in pieces:
            runs.append([key, lo, hi])
            weight += size
            if weight >= target:
                out.append(Split(stream, len(out), {"pieces": runs}))
                runs, weight = [], 0
        if runs:
            out.append(Split(stream, len(out), {"pieces": runs}))
        return out

    def read_split(self, split: Split) -> Iterator[Page]:
        self._check_stream(split.stream)
        root = self._root()
        pieces = split.spec.get("pieces")
        if not isinstance(pieces, list):
            raise FatalConnectorError(f"split {split.index} of the files connector has no 'pieces': {split.spec!r}")
        work: list[tuple[Path, str, tuple[int, int | None] | None]] = []
        for piece in pieces:
            if not isinstance(piece, list) or len(piece) != 3:
                raise FatalConnectorError(f"a piece of a files split is [key, first line, end line]; got {piece!r}")
            key, lo, hi = piece
            if not isinstance(lo, int) or not (hi is None or isinstance(hi, int)):
                raise FatalConnectorError(f"a files split's line range is two integers; got {piece!r}")
            work.append((root / str(key), str(key), (lo, hi) if str(key).lower().endswith(".jsonl") else None))
        yield from self._pages(iter(work))

    def _check_stream(self, stream: str) -> None:
        if stream != "files":
            raise FatalConnectorError(f"the files connector has one stream, 'files'; got {stream!r}")

    def _root(self) -> Path:
        return self.config.path if self.config.path.is_dir() else self.config.path.parent

    def _pages(self, work: Iterator[tuple[Path, str, tuple[int, int | None] | None]]) -> Iterator[Page]:
        batch: list[Record] = []
        for file, key, lines in work:
            for record in self._records(file, key, lines):
                batch.append(record)
                if len(batch) >= self.config.page_size:
                    yield Page(records=batch)
                    batch = []
        if batch:
            yield Page(records=batch)

    def _records(self, file: Path, key: str, lines: tuple[int, int | None] | None = None) -> Iterator[Record]:
        try:
            if file.suffix.lower() == ".jsonl":
                yield from self._jsonl(file, key, lines or (1, None))
            else:
                yield parse_file(file, key)
        except IngestError as exc:
            yield Unreadable(key_prefix=key, reason=str(exc))

    def _jsonl(self, file: Path, key: str, lines: tuple[int, int | None]) -> Iterator[Record]:
        updated = _mtime(file)
        first, end = lines
        try:
            handle = file.open(encoding="utf-8")
        except OSError as exc:
            raise IngestError(f"cannot open {file}: {exc.strerror}") from exc
        with handle:
            for lineno, line in enumerate(handle, start=1):
                if lineno < first:
                    continue
                if end is not None and lineno >= end:
                    break
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    yield Unreadable(f"{key}#line{lineno}", f"line {lineno} is not valid JSON ({exc})")
                    continue
                if not isinstance(obj, dict):
                    yield Unreadable(f"{key}#line{lineno}", f"line {lineno} is not a JSON object")
                    continue
                doc_key = next((str(obj[f]) for f in self.config.id_field if f in obj), None)
                text = next((obj[f] for f in self.config.text_field if isinstance(obj.get(f), str)), None)
                if doc_key is None or text is None:
                    yield Unreadable(
                        f"{key}#line{lineno}",
                        f"line {lineno} lacks an id ({'/'.join(self.config.id_field)}) "
                        f"or a text field ({'/'.join(self.config.text_field)})",
                    )
                    continue
                title = obj.get(self.config.title_field)
                metadata = {
                    k: v
                    for k, v in obj.items()
                    if k not in (*self.config.id_field, *self.config.text_field, self.config.title_field)
                    and isinstance(v, str | int | float | bool)
                }
                yield Document(
                    key=f"{key}#{doc_key}",
                    text=text,
                    title=title if isinstance(title, str) else "",
                    uri=f"{file.resolve().as_uri()}#{doc_key}",
                    updated_at=updated,
                    metadata=metadata,
                )


def _mtime(file: Path) -> datetime:
    return datetime.fromtimestamp(file.stat().st_mtime, tz=UTC)


def parse_file(file: Path, key: str | None = None) -> Document:
    """One document from a txt/md/rst/html/pdf file; :class:`IngestError` when unreadable."""
    suffix = file.suffix.lower()
    try:
        if suffix == ".pdf":
            title, text = _pdf(file)
        else:
            raw = file.read_bytes()
            if b"\x00" in raw[:8192]:
                raise IngestError(f"{file} looks binary (NUL bytes), not {suffix} text")
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise IngestError(f"{file} is not UTF-8 text (byte {exc.start}); convert it to UTF-8") from exc
            title, text = _html(decoded) if suffix in HTML_SUFFIXES else (_text_title(decoded, file), decoded)
    except OSError as exc:
        raise IngestError(f"cannot read {file}: {exc.strerror}") from exc
    if not text.strip():
        raise IngestError(f"{file} has no text to index")
    return Document(
        key=key or file.name,
        text=text,
        title=title or file.stem,
        uri=file.resolve().as_uri(),
        updated_at=_mtime(file),
        metadata={"path": str(file), "type": suffix.lstrip(".")},
    )


def _text_title(text: str, file: Path) -> str:
    for line in text.splitlines()[:20]:
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
    return file.stem


def _html(markup: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return title, "\n".join(line for line in lines if line)


def _pdf(file: Path) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(file)
        if reader.is_encrypted:
            raise IngestError(f"{file} is an encrypted PDF; decrypt it first")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str(reader.metadata.title) if reader.metadata and reader.metadata.title else ""
    except (PdfReadError, ValueError, KeyError) as exc:
        raise IngestError(f"{file} is not a readable PDF ({exc})") from exc
    return title, "\n\n".join(p.strip() for p in pages if p.strip())
