"""A real browser for the explorer's tests and benchmark: Debian's chromium driven by its chromedriver (selenium).

`ensure_chromium()` FAILS the test when chromium or its driver is missing (scripts/test installs them with apt-get
when it runs as root, as CI does): a browser test that skips would pass off an untested explorer as green. `chromium_driver(download_dir)` starts a headless session at 1366x768 with a fresh profile.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1366, 768)


def ensure_chromium() -> None:
    """Fail (never skip) when the browser is missing: scripts/test installs it (as root, as CI runs) beforehand."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"the explorer's browser tests need {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install "
                    "chromium chromium-driver; scripts/test installs them when it runs as root)", pytrace=False)


def chromium_driver(download_dir: Path | None = None):
    """A headless chromium session (selenium WebDriver), 1366x768, its own temporary profile; quit it when done."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    ensure_chromium()
    profile = tempfile.mkdtemp(prefix="auditlog-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for script and CSP errors
    if download_dir is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                                  "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(*WINDOW)
    original_quit = driver.quit

    def quit_and_clean() -> None:
        try:
            original_quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    return driver


def wait_ready(driver, timeout: float = 20.0) -> dict:
    """Wait until the explorer's view says it is done (data-state="ready"); its data attributes."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script("return document.getElementById('view').dataset.state") == "ready")
    return driver.execute_script("return Object.assign({}, document.getElementById('view').dataset)")
