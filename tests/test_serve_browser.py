"""The web page end to end in real headless Chromium (Playwright driving Debian's /usr/bin/chromium).

Skipped when Playwright or Chromium is absent. Setup (Debian):
``apt-get update && apt-get install -y chromium`` and ``pip install playwright`` (no
``playwright install``: the system browser is used).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip("/usr/bin/chromium is absent (apt-get install -y chromium)", allow_module_level=True)

from conftest import live_server, make_tiny_prepared

from gensar.serve.access import AccessConfig
from gensar.serve.service import ServeConfig, Service

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 15_000
KEY = "page-test-key-0123"


@pytest.fixture
def live_url(tmp_path) -> Iterator[str]:
    with _live(tmp_path, AccessConfig()) as url:
        yield url


@pytest.fixture
def live_url_with_key(tmp_path) -> Iterator[str]:
    with _live(tmp_path, AccessConfig(api_key=KEY)) as url:
        yield url


@contextlib.contextmanager
def _live(tmp_path, access: AccessConfig) -> Iterator[str]:
    """A real uvicorn server (FakeEngine) on a free 127.0.0.1 port, stopped after the test."""
    run = tmp_path / "run"
    make_tiny_prepared().save(run / "data")
    service = Service.open(run, ServeConfig(engine="fake"))
    try:
        with live_server(service, access) as address:
            yield f"http://{address}"
    finally:
        service.close()


def test_page_searches_recommends_and_records_clicks(live_url, tmp_path):
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            page.goto(live_url + "/")
            sync_api.expect(page.locator("#engine")).to_contain_text("engine: fake")
            sync_api.expect(page.locator("#users option")).to_have_count(30)  # filled by a fetch: wait for it
            sync_api.expect(page.locator("#key")).to_be_hidden()  # no key on this server: nothing to ask

            # Ad-hoc search, no user.
            page.fill("#query", "lab scales")
            page.click("#go")
            results = page.locator("#search-results li")
            sync_api.expect(results).to_have_count(10)
            sync_api.expect(page.locator("#search-meta")).to_have_text("ad-hoc")
            titles = results.locator(".title").all_inner_texts()
            assert all(re.fullmatch(r"item \d+ (scales|glassware)", t) for t in titles), titles

            # The user picker offers the users whose id starts with what was typed.
            page.fill("#user", "u2")
            sync_api.expect(page.locator("#users option")).to_have_count(11)  # u2, u20..u29

            # Pick a user: recommendations, suggested queries and history appear; search is personalized.
            page.fill("#user", "u3")
            page.click("#load-user")
            sync_api.expect(page.locator("#recommendations li")).to_have_count(10)
            sync_api.expect(page.locator("#suggestions .chip").first).to_be_visible()
            sync_api.expect(page.locator("#history li").first).to_be_visible()
            page.click("#go")
            sync_api.expect(page.locator("#search-meta")).to_have_text("personalized for u3")

            # Clicking a recommendation records a rec event; the history shows it first.
            first = page.locator("#recommendations li .title").first
            clicked = first.inner_text()
            first.click()
            sync_api.expect(page.locator("#status")).to_contain_text("Recorded event #1 for u3")
            sync_api.expect(page.locator("#history li").first).to_contain_text(clicked)
            sync_api.expect(page.locator("#history li .tag").first).to_have_text("rec")

            # A suggested query runs a search.
            chip = page.locator("#suggestions .chip").first
            query = chip.inner_text()
            chip.click()
            sync_api.expect(page.locator("#query")).to_have_value(query)

            shot = tmp_path / "page.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    assert errors == []


def test_page_asks_for_the_key_before_recording_clicks(live_url_with_key):
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(live_url_with_key + "/")
            sync_api.expect(page.locator("#engine")).to_contain_text("engine: fake")
            sync_api.expect(page.locator("#key")).to_be_visible()
            page.fill("#user", "u3")
            page.click("#load-user")  # reads need no key
            sync_api.expect(page.locator("#recommendations li")).to_have_count(10)
            first = page.locator("#recommendations li .title").first
            first.click()
            sync_api.expect(page.locator("#status")).to_have_text("This server needs its API key to record clicks.")
            page.fill("#key", "wrong")
            first.click()
            sync_api.expect(page.locator("#status")).to_contain_text("needs the server's API key")  # the 401
            page.fill("#key", KEY)
            first.click()
            sync_api.expect(page.locator("#status")).to_contain_text("Recorded event #1 for u3")
        finally:
            browser.close()
