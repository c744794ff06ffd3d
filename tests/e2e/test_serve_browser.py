"""``dataferry serve`` in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven
by Selenium with both paths given, so Selenium Manager never downloads anything).

On the quickstart's state: the matrix shows every environment fresh and green, its links lead to a
job and a database, pausing and resuming work with the token and fail without it. Screenshots of
the pages go to ``test-artifacts/screenshots/`` (gitignored); the README's picture is one of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataferry.config import Config
from serve_site import quickstart_state, serving
from servers import missing_dependency

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DB = "email-alert-api"
STAGING = f"{DB}-staging"
TOKEN = "browser-test-token"
#: The cells' background colours (static/style.css)
GREEN = "rgba(217, 242, 217, 1)"
PURPLE = "rgba(228, 220, 242, 1)"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[object]:
    """A headless Chromium; the test is skipped (failed on CI) without the Debian packages."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        missing_dependency(
            "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        missing_dependency(f"selenium is not installed ({exc})")
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager reach the internet
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,700"):
        options.add_argument(arg)
    options.add_argument(
        f"--user-data-dir={tmp_path / 'chromium-profile'}"
    )  # its own, even beside another run
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    driver.implicitly_wait(5)  # a page just submitted may still be loading
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """The quickstart's state."""
    return quickstart_state(tmp_path / "ferry")


def _shot(driver: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / name))  # type: ignore[attr-defined]


def _follow(driver: object, element: object) -> None:
    """Click a link or a button and wait until its page has been replaced by the next one."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.wait import WebDriverWait

    def gone(_driver: object) -> bool:
        try:
            element.is_enabled()  # type: ignore[attr-defined]
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            # Chromium sometimes says so in its own words, caught mid-navigation (seen in CI once)
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    element.click()  # type: ignore[attr-defined]
    WebDriverWait(driver, 30).until(gone)  # type: ignore[arg-type]


def _cell(driver: object, env: str) -> object:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'td.cell[data-env="{env}"][data-db="{DB}"]')  # type: ignore[attr-defined]


def test_the_pages_in_a_browser(browser: object, cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    from selenium.webdriver.common.by import By

    d: object = browser
    monkeypatch.setenv("DATAFERRY_SERVE_TOKEN", TOKEN)
    with serving(cfg) as site:
        d.get(site + "/")  # type: ignore[attr-defined]
        for env in ("production", "staging", "integration"):
            cell = _cell(d, env)
            assert cell.get_attribute("data-state") == "fresh", env  # type: ignore[attr-defined]
            assert cell.value_of_css_property("background-color") == GREEN, env  # type: ignore[attr-defined]
        assert "sanitised" in _cell(d, "staging").text  # type: ignore[attr-defined]
        _shot(d, "matrix.png")

        _follow(d, d.find_element(By.LINK_TEXT, STAGING))  # type: ignore[attr-defined]
        assert d.current_url == f"{site}/jobs/{STAGING}"  # type: ignore[attr-defined]
        assert d.find_elements(By.CSS_SELECTOR, "figure.chart svg rect.bar")  # type: ignore[attr-defined]
        assert "restore:production" in d.find_element(By.CSS_SELECTOR, "table.steps").text  # type: ignore[attr-defined]
        _shot(d, "job.png")

        _follow(d, d.find_element(By.LINK_TEXT, DB))  # type: ignore[attr-defined]
        assert d.current_url == f"{site}/databases/{DB}"  # type: ignore[attr-defined]
        assert "yes" in d.find_elements(By.CSS_SELECTOR, "table.artifacts")[1].text  # type: ignore[attr-defined]
        assert (
            "sha256 checked by 1 run(s): restore by "
            in d.find_elements(By.CSS_SELECTOR, "td.verified")[0].text
        )  # type: ignore[attr-defined]
        _shot(d, "database.png")

        # Pause staging with the token: the hold is listed and the cell turns purple.
        d.get(site + "/holds")  # type: ignore[attr-defined]
        form = d.find_element(By.CSS_SELECTOR, "form.pause")  # type: ignore[attr-defined]
        form.find_element(By.NAME, "scope").send_keys("environment")
        form.find_element(By.NAME, "target").send_keys("staging")
        form.find_element(By.NAME, "reason").send_keys("pen test of staging until Friday")
        form.find_element(By.NAME, "by").send_keys("ann")
        form.find_element(By.NAME, "token").send_keys(TOKEN)
        _follow(d, form.find_element(By.CSS_SELECTOR, "button"))
        assert "is held by ann (dataferry serve)" in d.find_element(By.ID, "done").text  # type: ignore[attr-defined]
        assert d.find_element(By.CSS_SELECTOR, "td.reason").text == "pen test of staging until Friday"  # type: ignore[attr-defined]
        _shot(d, "holds.png")
        d.get(site + "/")  # type: ignore[attr-defined]
        assert _cell(d, "staging").value_of_css_property("background-color") == PURPLE  # type: ignore[attr-defined]
        assert _cell(d, "production").get_attribute("data-state") == "fresh"  # type: ignore[attr-defined]
        _shot(d, "matrix-held.png")  # docs/img/serve-matrix.png is a copy of this one

        # Resuming with a wrong token is refused with 401 and the hold stays.
        d.get(site + "/holds")  # type: ignore[attr-defined]
        row = d.find_element(By.CSS_SELECTOR, "tr.hold-row")  # type: ignore[attr-defined]
        row.find_element(By.NAME, "token").send_keys("wrong")
        _follow(d, row.find_element(By.CSS_SELECTOR, "button"))
        assert "a valid token is needed" in d.find_element(By.CSS_SELECTOR, ".error-message").text  # type: ignore[attr-defined]
        d.get(site + "/holds")  # type: ignore[attr-defined]
        assert len(d.find_elements(By.CSS_SELECTOR, "tr.hold-row")) == 1  # type: ignore[attr-defined]
        row = d.find_element(By.CSS_SELECTOR, "tr.hold-row")  # type: ignore[attr-defined]
        row.find_element(By.NAME, "token").send_keys(TOKEN)
        _follow(d, row.find_element(By.CSS_SELECTOR, "button"))
        assert d.find_element(By.ID, "done").text == "resumed environment staging"  # type: ignore[attr-defined]
        assert d.find_element(By.ID, "no-holds")  # type: ignore[attr-defined]

    # Without the token variable the page is read-only: no forms, and a post is refused.
    monkeypatch.delenv("DATAFERRY_SERVE_TOKEN")
    with serving(cfg) as site:
        d.get(site + "/holds")  # type: ignore[attr-defined]
        assert d.find_element(By.ID, "read-only")  # type: ignore[attr-defined]
        assert not d.find_elements(By.CSS_SELECTOR, "form")  # type: ignore[attr-defined]
    assert os.listdir(SHOTS)


def test_the_readme_shows_the_page() -> None:
    """The README's picture is a small PNG (a copy of ``matrix-held.png`` from the test above)."""
    root = Path(__file__).resolve().parents[2]
    picture = root / "docs" / "img" / "serve-matrix.png"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.stat().st_size < 200_000
    assert "docs/img/serve-matrix.png" in (root / "README.md").read_text(encoding="utf-8")
