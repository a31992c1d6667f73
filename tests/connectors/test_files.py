from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.base import Document, Unreadable
from connectors.files import FilesConfig, FilesConnector, parse_file
from grounded.errors import FatalConnectorError, IngestError


def _minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose content stream draws ``text`` in Helvetica."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _read_all(connector: FilesConnector) -> list[object]:
    return [record for page in connector.read("files", None) for record in page.records]


def test_markdown_title_comes_from_the_first_heading(tmp_path: Path) -> None:
    file = tmp_path / "guide.md"
    file.write_text("Intro line\n# Install guide\n\nRun make demo.\n", encoding="utf-8")
    doc = parse_file(file, "guide.md")
    assert doc.title == "Install guide"
    assert doc.text.endswith("Run make demo.\n")
    assert doc.uri == file.resolve().as_uri()


def test_html_drops_scripts_and_keeps_the_title(tmp_path: Path) -> None:
    file = tmp_path / "page.html"
    file.write_text(
        "<html><head><title>Release notes</title><script>var x = 1;</script></head>"
        "<body><h1>Version 2</h1><p>Faster search.</p></body></html>",
        encoding="utf-8",
    )
    doc = parse_file(file)
    assert doc.title == "Release notes"
    assert doc.text == "Version 2\nFaster search."


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    file = tmp_path / "paper.pdf"
    file.write_bytes(_minimal_pdf("Grounded answers cite their sources"))
    doc = parse_file(file)
    assert "Grounded answers cite their sources" in doc.text
    assert doc.title == "paper"


def test_corrupt_pdf_is_an_ingest_error(tmp_path: Path) -> None:
    file = tmp_path / "broken.pdf"
    file.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with pytest.raises(IngestError, match=r"broken\.pdf"):
        parse_file(file)


def test_beir_jsonl_yields_one_document_per_line(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows = [{"_id": "7", "title": "Aspirin", "text": "Aspirin thins blood.", "year": 2001}, {"_id": "8", "text": "B"}]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    records = _read_all(FilesConnector(FilesConfig(path=corpus)))
    assert [(r.key, r.title, r.text) for r in records if isinstance(r, Document)] == [
        ("corpus.jsonl#7", "Aspirin", "Aspirin thins blood."),
        ("corpus.jsonl#8", "", "B"),
    ]
    first = records[0]
    assert isinstance(first, Document)
    assert first.metadata == {"year": 2001}


def test_bad_jsonl_lines_are_reported_and_the_rest_read(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "1", "text": "ok"}\nnot json\n{"title": "no id"}\n', encoding="utf-8")
    records = _read_all(FilesConnector(FilesConfig(path=corpus)))
    assert [r.key for r in records if isinstance(r, Document)] == ["c.jsonl#1"]
    bad = [r for r in records if isinstance(r, Unreadable)]
    assert [b.key_prefix for b in bad] == ["c.jsonl#line2", "c.jsonl#line3"]
    assert "not valid JSON" in bad[0].reason
    assert "lacks an id" in bad[1].reason


def test_folder_is_read_recursively_in_stable_order_skipping_hidden(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.txt").write_text("two", encoding="utf-8")
    (tmp_path / "one.md").write_text("one", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("hidden", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    records = _read_all(FilesConnector(FilesConfig(path=tmp_path)))
    assert [r.key for r in records if isinstance(r, Document)] == ["b/two.txt", "one.md"]


def test_missing_path_fails_the_check(tmp_path: Path) -> None:
    with pytest.raises(FatalConnectorError, match="does not exist"):
        FilesConnector(FilesConfig(path=tmp_path / "missing")).check()


def test_unsupported_single_file_fails_the_check(tmp_path: Path) -> None:
    file = tmp_path / "data.xlsx"
    file.write_bytes(b"PK")
    with pytest.raises(FatalConnectorError, match="supported"):
        FilesConnector(FilesConfig(path=file)).check()


def _folder_with_links(tmp_path: Path) -> Path:
    """notes/ with a file, a link to a file inside it, and links out of it (to a file and a folder)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd.txt").write_text("root:x:0:0:OUTSIDE-SECRET:/root:/bin/bash\n")
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "a.txt").write_text("A note inside the folder.\n")
    (notes / "alias.txt").symlink_to(notes / "a.txt")
    (notes / "passwd.txt").symlink_to(outside / "passwd.txt")
    (notes / "sub" / "up.txt").symlink_to(Path("..") / ".." / "outside" / "passwd.txt")
    (notes / "elsewhere").symlink_to(outside, target_is_directory=True)
    return notes


def test_symlinks_out_of_the_folder_are_not_followed(tmp_path: Path) -> None:
    """Issue 23, item 4: a link to /etc/passwd placed in an ingested folder must not be read."""
    notes = _folder_with_links(tmp_path)
    connector = FilesConnector(FilesConfig(path=notes))
    assert [p.relative_to(notes).as_posix() for p in connector.files()] == ["a.txt", "alias.txt"]
    texts = [r.text for r in _read_all(connector) if isinstance(r, Document)]
    assert texts
    assert not any("OUTSIDE-SECRET" in t for t in texts)
    assert [p.relative_to(notes).as_posix() for p in connector.outside_links()] == [
        "elsewhere",
        "passwd.txt",
        "sub/up.txt",
    ]


def test_follow_symlinks_reads_links_out_of_the_folder(tmp_path: Path) -> None:
    notes = _folder_with_links(tmp_path)
    connector = FilesConnector(FilesConfig(path=notes, follow_symlinks=True))
    assert "passwd.txt" in [p.relative_to(notes).as_posix() for p in connector.files()]
    assert any("OUTSIDE-SECRET" in r.text for r in _read_all(connector) if isinstance(r, Document))
    assert connector.outside_links() == []


def test_a_misspelt_files_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="follow_symlink"):
        FilesConfig.model_validate({"path": "notes", "follow_symlink": True})
