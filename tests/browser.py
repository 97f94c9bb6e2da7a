"""A real browser for the page tests: Debian's chromium through chromium-driver (installed by `make test`),
headless, and able to reach 127.0.0.1 only, so that a page needing anything from the internet fails here
as it would offline."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.live_server import free_port

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PAGE_SECONDS = 60


def start_browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    # no name resolves but 127.0.0.1: a page that needed a CDN would stay blank, as it would offline
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(PAGE_SECONDS)
    return driver


@contextmanager
def served_on_loopback(app) -> Iterator[str]:
    """`app` answering on 127.0.0.1 in a thread of this process: its base URL, until the block ends."""
    port = free_port()
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.started, "the app did not start on 127.0.0.1"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)
