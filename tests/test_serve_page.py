"""The web page of ``coldrec serve`` in a real browser (headless Chromium from the
system's package, driven by Playwright): a user's list renders with cold items marked,
an explanation opens on click, and an item added through the form lands in the list."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.test_serve import _free_port, _start, fresh

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no system Chromium (Debian: apt-get install -y chromium)"
)


def _a_user_whose_list_takes_a_twin(served_run: Path, folder: Path) -> tuple[str, dict[str, Any]]:
    """A user whose top 10 takes a new item with the text of their latest item, and that
    item's record. The page checks the top 20: the margin absorbs last-digit differences
    of scores computed in the server's process (seen once under heavy load)."""
    folder.mkdir()
    engine = fresh(served_run, folder)
    for row, history in enumerate(engine.users.histories):
        twin = engine.catalogue.records[history[-1]] if history else None
        if twin is not None:
            engine.add_items([{"item": "PROBE", "title": twin["title"],
                               "categories": twin["categories"]}])  # fmt: skip
            listing = engine.recommend(engine.users.ids[row], k=20).items
            if "PROBE" in [e["item"] for e in listing][:10]:
                return engine.users.ids[row], twin
    raise AssertionError("no user's list takes a twin of their latest item")


def test_an_item_added_through_the_page_appears_in_the_rendered_list(
    served_run: Path,
    tmp_path: Path,
) -> None:
    user, twin = _a_user_whose_list_takes_a_twin(served_run, tmp_path / "probe")
    fresh(served_run, tmp_path)  # the served copy, with a write log of its own
    port = _free_port()
    server = _start(tmp_path / "run", port)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#user", user)
            page.click("#pick button")
            page.wait_for_selector("#recommendations li")
            assert page.locator("#recommendations li").count() == 20
            assert page.locator("#history li").first.inner_text().startswith(twin["title"][:20])
            page.locator("#recommendations li").first.click()
            page.wait_for_function("document.getElementById('why').textContent.includes('alpha')")
            page.fill("#new-id", "PAGE-NEW")
            page.fill("#new-title", twin["title"])
            page.fill("#new-category", " > ".join(twin["categories"][0]))
            page.click("#add button")
            page.wait_for_function("document.getElementById('added').textContent !== ''")
            added = page.locator('#recommendations li[data-item="PAGE-NEW"]')
            assert added.count() == 1 and "new" in added.inner_text()
            assert page.inner_text("#added").startswith("added: rank ")
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait()
    assert (tmp_path / "page.png").stat().st_size > 10_000
