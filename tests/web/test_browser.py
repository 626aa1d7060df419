"""A real browser (Debian's chromium driven by Playwright, no browser download): sign in
through the OIDC emulator, ask, watch the streamed answer and its citations; a second person
asking the same question sees a different answer. Screenshots go to the test's tmp dir."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import unavailable
from tests.web.conftest import Web
from tests.web.corpus import SECRET_TITLE, SECRET_WORDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUESTION = "When does the board vote on the Nightjar acquisition?"


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        unavailable("chromium is not installed (make test-services installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        contexts: list[Any] = []

        def new(name: str) -> Any:
            ctx = pw.chromium.launch_persistent_context(
                str(tmp_path / f"profile-{name}"), executable_path=CHROMIUM, args=FLAGS,
                headless=True)
            contexts.append(ctx)
            return ctx
        yield new
        for ctx in contexts:
            ctx.close()


def ask_as(web: Web, ctx: Any, username: str, password: str, shots: Path) -> Any:
    page = ctx.new_page()
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    page.goto(web.url)
    page.click("#signin")
    page.wait_for_selector("#username")  # the issuer's login form
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#signin")
    page.wait_for_selector("#question")
    assert username in page.inner_text("#who")
    page.fill("#question", QUESTION)
    page.click("#send")
    page.wait_for_selector(".turn[data-done='true']", timeout=30_000)
    page.screenshot(path=str(shots / f"{username}.png"), full_page=True)
    assert violations == []
    return page


def test_two_people_in_a_real_browser(make_web: Callable[..., Web],
                                      browser_context: Callable[[str], Any],
                                      tmp_path: Path) -> None:
    web = make_web()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    ceo = ask_as(web, browser_context("ceo"), "ceo", "ceo-pass", shots)
    answer = ceo.inner_text(".turn .answer")
    assert any(w in answer for w in SECRET_WORDS), answer
    titles = ceo.locator(".citations .cite").all_inner_texts()
    assert SECRET_TITLE in titles
    assert ceo.locator(".citations .quote").count() >= 1
    assert ceo.locator(".feedback .vote-up").count() == 1
    ceo.click(".feedback .vote-up")
    ceo.wait_for_selector(".feedback-status:has-text('Thanks')")
    # a follow-up in the same conversation
    ceo.fill("#question", "And how much is Acme paying?")
    ceo.click("#send")
    ceo.wait_for_selector(".turn:nth-of-type(2)[data-done='true']", timeout=30_000)
    ceo.screenshot(path=str(shots / "ceo-follow-up.png"), full_page=True)

    ada = ask_as(web, browser_context("ada"), "ada", "ada-pass", shots)
    shown = ada.inner_text("#thread")
    assert ada.locator(".turn .answer.empty").count() == 1  # the "no answer" state
    assert "ask the document's owner" in shown
    assert SECRET_TITLE not in shown.replace(QUESTION, "")
    assert not any(w in shown.replace(QUESTION, "") for w in SECRET_WORDS)
    assert ada.locator(".citations .cite").count() == 0
    assert answer != ada.inner_text(".turn .answer")
    # sign out: the page offers sign-in again
    ada.click("#logout")
    ada.wait_for_load_state()
    assert ada.locator("a#signin").count() == 1, ada.content()
    ada.screenshot(path=str(shots / "ada-signed-out.png"))
    assert sorted(p.name for p in shots.iterdir()) == [
        "ada-signed-out.png", "ada.png", "ceo-follow-up.png", "ceo.png"]
