"""`/docs` and `/redoc` in a real browser (Debian's chromium and chromium-driver, installed by `make test`)
that may reach 127.0.0.1 only: every operation must be drawn from assets the server itself serves."""

from types import SimpleNamespace

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from serving.api_docs import ASSETS, ASSETS_URL
from serving.config import LimitsConfig
from serving.http_api import build_http_app
from tests.browser import PAGE_SECONDS, served_on_loopback


@pytest.fixture(scope="module")
def server():
    """The HTTP app on 127.0.0.1 (its docs need no backend), stopped after the module."""
    with served_on_loopback(build_http_app(SimpleNamespace(), LimitsConfig())) as url:
        yield url


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
