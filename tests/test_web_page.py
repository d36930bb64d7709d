"""The page at / in a real browser: type a sentence, press Translate, read what seq2seq-translate prints.

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``; .ci/run
installs them): skipped without them, but failed under CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seq2seq.serve.app import Limits, create_app
from seq2seq.serve.model import ServedModel
from tests.test_serve import INPUTS, train_tiny, translate_tool

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def require_browser() -> tuple[str, str]:
    """(browser, driver) paths; skip without them, but fail under CI (CI=true)."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = next((found for name in DRIVERS if (found := shutil.which(name))), None)
    problem = None
    try:
        import selenium  # noqa: F401
    except ImportError:
        problem = "selenium is not installed (pip install -e '.[test]')"
    if browser is None or driver is None:
        problem = "no Chromium or chromedriver on PATH (apt-get install chromium chromium-driver)"
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return str(browser), str(driver)


class ServerThread:
    """uvicorn serving ``app`` on a free loopback port, in a thread of this process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))  # bound here: no other process can take the port
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    browser_path, driver_path = require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path  # with both paths given, Selenium downloads nothing
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1000,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def translate_on_page(driver: Any, url: str, sentence: str) -> Any:
    """Open the page, type ``sentence``, press the button; the first result's element."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))  # /health read
    box = driver.find_element(By.ID, "source")
    box.clear()
    box.send_keys(sentence)
    driver.find_element(By.ID, "translate").click()
    return wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#results .result")))


@pytest.mark.slow
def test_the_page_translates_a_sentence_as_the_translate_tool_does(browser, tmp_path):
    from selenium.webdriver.common.by import By

    checkpoint = train_tiny(tmp_path, "translate")
    sentence = INPUTS["translate"][0]
    expected = translate_tool(checkpoint, [sentence])[0]
    app = create_app(ServedModel.load([checkpoint]), Limits())
    with ServerThread(app) as server:
        result = translate_on_page(browser, server.url, sentence)
        assert browser.find_element(By.ID, "beam").get_attribute("value") == "1"  # the checkpoint's
        shown = result.find_element(By.CSS_SELECTOR, ".translation")
        assert result.get_attribute("data-output") == expected
        assert shown.text == expected.strip()  # the browser trims what it renders
        heatmap = result.find_element(By.CSS_SELECTOR, "table.heatmap")
        rows = heatmap.find_elements(By.CSS_SELECTOR, "tbody tr")
        columns = heatmap.find_elements(By.CSS_SELECTOR, "thead th")
        assert rows and rows[-1].find_element(By.TAG_NAME, "th").text == "</s>"
        assert len(columns) - 1 == len(rows[0].find_elements(By.TAG_NAME, "td")) > 1
        assert browser.find_element(By.ID, "status").text == ""  # no error shown


@pytest.mark.slow
def test_the_page_shows_the_tags_over_the_words(browser, tmp_path):
    from selenium.webdriver.common.by import By

    checkpoint = train_tiny(tmp_path, "tag")
    sentence = INPUTS["tag"][0]
    expected = translate_tool(checkpoint, [sentence])[0]
    with ServerThread(create_app(ServedModel.load([checkpoint]), Limits())) as server:
        result = translate_on_page(browser, server.url, sentence)
        assert not browser.find_element(By.ID, "beam").is_displayed()  # a tagger does not search
        assert result.get_attribute("data-output") == expected
        label, tags = expected.split("\t")
        assert result.find_element(By.CSS_SELECTOR, ".label").text == label
        rows = result.find_elements(By.CSS_SELECTOR, "table.tags tr")
        assert [td.text for td in rows[0].find_elements(By.TAG_NAME, "td")] == tags.split()
        assert [td.text for td in rows[1].find_elements(By.TAG_NAME, "td")] == sentence.split()


def test_ci_fails_rather_than_skips_without_a_browser(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        require_browser()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_browser()


def test_the_page_loads_nothing_from_elsewhere():
    static = Path(__file__).resolve().parents[1] / "seq2seq" / "serve" / "static"
    for name in ("index.html", "app.js", "style.css"):
        text = (static / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
