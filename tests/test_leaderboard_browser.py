"""The generated leaderboard page in headless Chromium: sorting by a column, per-domain drill-down, screenshot.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and the
``selenium`` client; skipped with the reason when either is missing, except under
``OODPL_REQUIRE_BROWSER=1`` (set by ``.ci/run`` wherever Chromium is installed), where that fails. The page is opened from a
``file://`` URL (it is self-contained). The screenshot goes to ``test-artifacts/leaderboard.png``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ood_pl_bench.leaderboard import render

from .leaderboard_util import copy_tree

pytest_plugins = ["tests.leaderboard_fixtures"]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = REPO / "test-artifacts"


def _skip_reason() -> str | None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return ("headless Chromium is not installed (apt-get install -y chromium chromium-driver; "
                ".ci/run does this)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium client is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium driven by /usr/bin/chromedriver (fresh profile, no network features)."""
    reason = _skip_reason()
    if reason:
        if os.environ.get("OODPL_REQUIRE_BROWSER"):
            pytest.fail(f"OODPL_REQUIRE_BROWSER is set (CI with Chromium) but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--window-size=1500,1300"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _names(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#table-0 tbody tr.main td.name")]


def test_page_sorts_drills_down_and_is_captured(lb_base, lb_env, browser):
    from selenium.webdriver.common.by import By

    root = copy_tree(lb_base, lb_env / "board")
    _, page = render.render_leaderboard(root)
    browser.get(page.resolve().as_uri())
    assert browser.title == "ood-pl-bench leaderboard"
    ranked = _names(browser)
    assert sorted(ranked) == ["reference-smoke-seed0", "sft-test-smoke-seed0"]

    # Sort by submission name (ascending on the first click), then reverse it with a second click.
    header = browser.find_element(By.CSS_SELECTOR, '#table-0 th[data-key="submission"]')
    header.click()
    ascending = _names(browser)
    assert ascending == sorted(ranked) and header.get_attribute("aria-sort") == "ascending"
    header.click()
    descending = _names(browser)
    assert descending == sorted(ranked, reverse=True) and header.get_attribute("aria-sort") == "descending"
    # Two rows with different names: one of the two clicks moved the rows away from the ranked order.
    assert ascending != ranked or descending != ranked
    # Sorting by the rank column restores the ranking.
    browser.find_element(By.CSS_SELECTOR, '#table-0 th[data-key="group"]').click()
    assert _names(browser) == ranked

    # Drill down: the first row's per-domain table opens with all 10 held-out domains.
    body = browser.find_elements(By.CSS_SELECTOR, "#table-0 tbody")[0]
    detail = body.find_element(By.CSS_SELECTOR, "tr.detail")
    assert not detail.is_displayed()
    body.find_element(By.CSS_SELECTOR, "button.toggle").click()
    assert detail.is_displayed()
    held = [r for r in detail.find_elements(By.CSS_SELECTOR, "table.domains tbody tr")
            if r.find_elements(By.TAG_NAME, "td")[0].text == "held out"]
    assert len(held) == 10

    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.heatmap rect")) >= 20
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.scatter circle")) >= 2
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "leaderboard.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
