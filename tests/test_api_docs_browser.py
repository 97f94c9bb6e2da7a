"""`/docs` and `/redoc` in a real browser (Debian's chromium and chromium-driver, installed by `make test`)
that may reach 127.0.0.1 only: every operation must be drawn from assets the server itself serves."""

import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from serving.api_docs import ASSETS, ASSETS_URL
from serving.config import LimitsConfig
from serving.http_api import build_http_app

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PAGE_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The HTTP app on 127.0.0.1 (its docs need no backend), stopped after the module."""
    app = build_http_app(SimpleNamespace(), LimitsConfig())
    port = free_port()
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.started, "the docs server did not start"
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    # no name resolves but 127.0.0.1: a page that needed a CDN would stay blank, as it would offline
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_SECONDS)
    yield driver
    driver.quit()


def operations(base: str) -> list[dict]:
    schema = httpx.get(f"{base}/openapi.json").json()
    return [operation for methods in schema["paths"].values() for operation in methods.values()]


def test_swagger_ui_draws_every_operation_offline(server, browser):
    expected = operations(server)
    assert len(expected) >= 7  # predict, model, feedback, train, drop, rollback, healthz
    browser.get(f"{server}/docs")
    blocks = WebDriverWait(browser, PAGE_SECONDS).until(
        lambda page: page.find_elements(By.CSS_SELECTOR, ".opblock") or False
    )
    assert len(blocks) == len(expected)
    summaries = {
        element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-description")
    }
    assert summaries == {operation["summary"] for operation in expected}


def test_redoc_draws_every_operation_offline(server, browser):
    expected = {operation["summary"] for operation in operations(server)}
    browser.get(f"{server}/redoc")
    WebDriverWait(browser, PAGE_SECONDS).until(lambda page: page.find_elements(By.CSS_SELECTOR, "h2") or False)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert all(summary in text for summary in expected), expected - {s for s in expected if s in text}


def test_the_docs_assets_come_from_the_package_and_nothing_else(server):
    for name, media_type in ASSETS.items():
        response = httpx.get(f"{server}{ASSETS_URL}/{name}")
        assert response.status_code == 200 and response.headers["content-type"].startswith(media_type)
        assert len(response.content) > 1000
    assert httpx.get(f"{server}{ASSETS_URL}/secrets.txt").status_code == 404
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{server}{page}").text
        assert "http://" not in html and "https://" not in html, page  # no CDN, no web font
