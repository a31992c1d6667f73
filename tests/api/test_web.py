"""The web page at ``/`` in headless Chromium (Debian's package, driven by Playwright).

Never ``playwright install``: the browser is ``/usr/bin/chromium`` (``apt-get install -y
chromium``). Without it the test skips with a message, except in CI (``tests/ci.py``) where it fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import grounded
from grounded.api.app import create_app
from tests.api.serving import serving
from tests.ci import skip_or_fail
from tests.conftest import REAL_QUESTION
from tests.fake_expert import fake_backend  # noqa: F401  (fixture)

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.slow


def _need_chromium() -> None:
    if not CHROMIUM.exists():
        skip_or_fail("needs /usr/bin/chromium (apt-get install -y chromium); Playwright's own browsers are never used")


@pytest.fixture(scope="module")
def web_url(built_kb_path: Path, fake_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    _need_chromium()
    root = tmp_path_factory.mktemp("web") / "kb"
    shutil.copytree(built_kb_path, root)
    kb = grounded.open(root, create=False, experts={"answer": {"backend": fake_backend, "model": "echo"}})
    with serving(create_app(kb)) as base:
        yield base


def test_ask_and_see_cited_passages(web_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(web_url + "/")
            expect(page.get_by_test_id("version")).to_have_text("index version: 000001")
            page.fill("#question", "How do I leave the innermost loop early?")
            page.click("#submit")
            answer = page.get_by_test_id("answer")
            expect(answer).to_contain_text("[1]", timeout=60_000)
            assert "enclosing loop" in answer.inner_text()
            passages = page.locator(".passage")
            assert passages.count() >= 1
            first = page.locator("#cite-1")
            expect(first.locator("h3")).to_contain_text("break")
            mark = first.locator("mark")
            expect(mark.first).to_be_visible()
            assert mark.first.inner_text().strip() in first.locator("pre").inner_text()
            page.locator("#answer a.cite").first.click()
            expect(first).to_have_class("passage active")
            trace = page.get_by_test_id("trace")
            expect(trace.locator("li[data-step=retrieve]")).to_contain_text("hybrid search")
            expect(trace.locator("li[data-step=verify]")).to_contain_text("kept")
            expect(page.locator("#meta")).to_contain_text("index version 000001")

            page.fill("#apikey", "gk_not_a_key")  # development mode ignores keys
            page.fill("#question", "What is the meaning of lambda?")
            page.click("#submit")
            expect(page.locator("#meta")).to_contain_text("index version", timeout=60_000)
            assert errors == []
        finally:
            browser.close()


def test_the_page_shows_the_real_models_answer(real_kb_path: Path, real_answer: Any) -> None:
    """Once with SmolLM2 itself (no stand-in): the page shows the engine's own answer, decoded afresh."""
    from playwright.sync_api import expect, sync_playwright

    _need_chromium()
    kb = grounded.open(real_kb_path, create=False, answer={"cache": False})
    with serving(create_app(kb)) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(base + "/")
            page.fill("#question", REAL_QUESTION)
            page.click("#submit")
            expect(page.locator("#meta")).to_contain_text(f"model {real_answer.model}", timeout=120_000)
            assert "from the answer cache" not in page.locator("#meta").inner_text()
            shown = page.get_by_test_id("answer").inner_text()
            for sentence in real_answer.sentences:
                cites = "".join(f"[{n}]" for n in sentence.citations)
                assert f"{sentence.text} {cites}" in shown, (shown, sentence)
            expect(page.locator(".passage")).to_have_count(len(real_answer.citations))
        finally:
            browser.close()


def test_the_page_keeps_a_conversation(web_url: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(web_url + "/")
            turns = page.get_by_test_id("turns").locator("li")
            for n, question in enumerate(
                (
                    "What does the assert statement do?",
                    "When is it ignored?",
                    "What exception does it raise?",
                ),
                start=1,
            ):
                page.fill("#question", question)
                page.click("#submit")
                expect(turns).to_have_count(2 * n, timeout=60_000)
                if n == 2:
                    rewrite = page.get_by_test_id("trace").locator("li[data-step=rewrite]")
                    expect(rewrite).to_contain_text("assert statement")
                expect(page.locator("#cite-1 h3")).to_contain_text("assert")
            expect(turns.nth(4)).to_have_text("What exception does it raise?")
            expect(page.locator("#meta")).to_contain_text("answerable")
            page.click("#new-conversation")
            expect(turns).to_have_count(0)
            expect(page.locator("#conversation")).to_be_hidden()
            assert errors == []
        finally:
            browser.close()
