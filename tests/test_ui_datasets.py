"""The console's Datasets page: Playwright driving Debian's Chromium against a real `xsharp
server` (the session's Ray) whose catalog holds a dataset made by the test, and an import
started from the page's form."""

from __future__ import annotations

import signal

import pytest
from playwright.sync_api import expect

from tests.service import Server
from tests.test_datasets_api import make_dataset, write_pngs
from tests.test_ui import browser, log_in, shot  # noqa: F401 (browser: a fixture, one Chromium a module)


@pytest.fixture(scope="module")
def server(tmp_path_factory, ray_address):
    base = tmp_path_factory.mktemp("console-datasets")
    (base / "data").mkdir()
    write_pngs(base / "data" / "pets", {"cat": 12, "dog": 8})
    s = Server(base / "home", ray_address, "--data-root", str(base / "data")).start()
    s.data = base / "data"
    s.tokens = {"alice": s.add_user("alice"), "bob": s.add_user("bob"), "root": s.add_user("root", admin=True)}
    s.manifest = make_dataset(s.home, "alice", "pics")
    yield s
    s.kill(signal.SIGTERM)


def test_the_datasets_page_shows_counts_per_class_and_thumbnails(server, browser, tmp_path):
    page = log_in(browser, server, "alice")
    page.click("nav a[data-nav=datasets]")
    page.wait_for_url("**/ui/datasets")
    expect(page.locator("nav a[data-nav=datasets]")).to_have_class("active")
    row = page.locator('#datasets tr[data-ref="alice/pics@1"]')
    expect(row).to_be_visible()
    expect(row.locator("td.rows-train")).to_have_text("6")
    expect(row.locator("td.rows-val")).to_have_text("2")
    expect(row.locator("td.rows-test")).to_have_text("4")
    # the newest version is picked on load: class counts per split, and thumbnails
    counts = page.locator("#class-counts")
    expect(counts.locator("tbody tr")).to_have_count(3)
    m = server.manifest
    for i, cls in enumerate(m.classes):
        for split in ("train", "val", "test"):
            expect(counts.locator(f'tr[data-class="{cls}"] td.count-{split}')).to_have_text(str(m.counts[split][i]))
    expect(counts.locator("th.total-train")).to_have_text("6")
    page.wait_for_function(
        "() => document.querySelectorAll('#samples img').length > 0 && Array.from(document.querySelectorAll('#samples img')).every((i) => i.complete)"
    )
    widths = page.eval_on_selector_all("#samples img", "els => els.map((i) => i.naturalWidth)")
    assert len(widths) == 6 and all(w == 64 for w in widths), widths  # every training row (6), 8 px scaled to 64
    assert page.locator("#samples figcaption").all_inner_texts()[:3] == ["cat", "dog", "eel"]
    page.select_option("#sample-split", "test")
    page.wait_for_function("() => document.querySelectorAll('#samples img').length === 4")
    assert page.locator("#share-toggle").count() == 0  # alice is no admin
    shot(page, "datasets", tmp_path)
    # bob sees nothing of alice's
    bob = log_in(browser, server, "bob")
    bob.goto(f"{server.url}/ui/datasets")
    expect(bob.locator("#datasets tbody")).to_contain_text("No datasets yet")
    assert bob.locator('#datasets tr[data-ref="alice/pics@1"]').count() == 0


def test_an_import_started_from_the_page_shows_its_progress_and_lands_in_the_list(server, browser):
    page = log_in(browser, server, "alice")
    page.goto(f"{server.url}/ui/datasets")
    page.fill("#import-name", "outside")
    page.fill("#import-path", "/etc")
    page.click("#import-button")
    expect(page.locator("#import-error")).to_contain_text("path: not under a data root")
    page.fill("#import-name", "pets")
    page.fill("#import-path", str(server.data / "pets"))
    page.fill("#import-height", "8")
    page.fill("#import-width", "8")
    page.click("#import-button")
    done = page.locator('#imports tr[data-state="DONE"]')
    expect(done).to_have_count(1, timeout=90_000)
    expect(done).to_contain_text("alice/pets@1")
    expect(done).to_contain_text("20/20 files")
    row = page.locator('#datasets tr[data-ref="alice/pets@1"]')
    expect(row).to_be_visible()
    row.locator("a").click()
    expect(page.locator('#class-counts tr[data-class="cat"]')).to_be_visible()
    page.wait_for_function(
        "() => document.querySelectorAll('#samples img').length > 0 && Array.from(document.querySelectorAll('#samples img')).every((i) => i.complete && i.naturalWidth > 0)"
    )
