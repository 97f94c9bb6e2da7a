"""The console at `/`: its files, the routes it reads, and the page itself in a real browser (Debian's
chromium, reaching 127.0.0.1 only), driven as a person would."""

import asyncio
import base64

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from model.continual import ContinualModel
from model.published import load_published, publish
from serving.config import LimitsConfig
from serving.console import FILES
from serving.http_api import build_http_app
from serving.predictor import Predictor
from tests.browser import PAGE_SECONDS, served_on_loopback
from tests.images import drawn_image, image_bytes
from tests.in_process import InProcessBackend
from tests.served_state import learn_and_publish, only_text_only_rows_known, tiny_app_config

TOKEN = "console-token-for-tests"


@pytest.fixture(scope="module")
def state(tmp_path_factory, tiny_backbone):
    """Two versions, the second with gate figures as the updater writes them, then served."""
    folder = tmp_path_factory.mktemp("console-state")
    learn_and_publish(tiny_backbone, folder, "first", ["dog", "bus"])
    model = ContinualModel.from_state(tiny_backbone, load_published(folder))
    gate = {"accuracy": 87.5, "forgetting": {"first": 4.0}, "held_back": 8}
    model.save(folder, notes={"training": {"samples": 12}, "gate": gate})
    return folder


@pytest.fixture(scope="module")
def predictor(state, tiny_config):
    return Predictor.load(tiny_app_config(tiny_config, state))


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_the_page_and_its_files_come_from_the_package(predictor):
    app = build_http_app(InProcessBackend(predictor), LimitsConfig())
    page = call(app, "GET", "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/console/console.js" in page.text and "/console/console.css" in page.text
    for name, media_type in FILES.items():
        asset = call(app, "GET", f"/console/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media_type)
        assert (
            "http://" not in asset.text.replace("http://www.w3.org/2000/svg", "") and "https://" not in asset.text
        )
    assert call(app, "GET", "/console/secrets.txt").status_code == 404


def test_versions_list_what_each_manifest_says(predictor):
    listed = call(build_http_app(InProcessBackend(predictor), LimitsConfig()), "GET", "/v1/versions").json()
    assert [v["version"] for v in listed] == [1, 2] and [v["served"] for v in listed] == [False, True]
    assert listed[0]["accuracy"] is None and listed[0]["tasks"] == ["first"] and listed[0]["classes"] == 2
    assert (
        listed[1]["accuracy"] == 87.5 and listed[1]["forgetting"] == {"first": 4.0} and listed[1]["samples"] == 12
    )


def test_unknown_answers_are_remembered_newest_first(state, tiny_config, tiny_backbone, tmp_path):
    import shutil

    folder = shutil.copytree(state, tmp_path / "state")
    model = ContinualModel.from_state(tiny_backbone, load_published(folder))
    only_text_only_rows_known(model)
    model.save(folder)
    backend = InProcessBackend(Predictor.load(tiny_app_config(tiny_config, folder)))
    app = build_http_app(backend, LimitsConfig())
    png = base64.b64encode(image_bytes(drawn_image("disk", 48))).decode()
    for body in ({"text": "a red dog", "image": png}, {"text": "a blue bus"}, {"image": png}):
        assert call(app, "POST", "/v1/predict", json=body).status_code == 200
    remembered = call(app, "GET", "/v1/unknown").json()
    assert [(a["text"], a["image"]) for a in remembered] == [
        (None, True),
        ("a red dog", True),
    ]  # text only is known
    assert all(a["model_version"] == 3 and a["label"] in {"dog", "bus"} for a in remembered)


def wait_for_text(browser, element_id: str, wanted: str) -> str:
    def shown(page):
        text = page.find_element(By.ID, element_id).text
        return text if wanted in text else False

    return WebDriverWait(browser, PAGE_SECONDS).until(shown)


def test_the_console_shows_what_is_learned_answers_and_takes_corrections(live_server, browser):
    served = live_server.version()
    copy = ContinualModel.from_state(live_server.torch_backbone, load_published(live_server.state_dir))
    newest = copy.save(live_server.state_dir).version  # a second version to roll back from, the same classes
    live_server.wait_for_version(newest)
    try:
        browser.get(live_server.url + "/")
        wait_for_text(browser, "serving", f"serving version {newest}")
        classes = {name for task in live_server.get("/v1/model").json()["tasks"] for name in task["classes"]}
        listed = browser.find_element(By.ID, "tasks").text
        assert all(name in listed for name in classes)
        rows = browser.find_elements(By.CSS_SELECTOR, "#versions tbody tr")
        assert len(rows) == len(live_server.get("/v1/versions").json())
        assert browser.find_elements(By.CSS_SELECTOR, "#plot text")  # the axes at least

        browser.find_element(By.ID, "try-text").send_keys("a red dog")
        browser.find_element(By.ID, "try-submit").click()
        details = wait_for_text(browser, "answer-details", f"version {newest}")
        assert "missing image" in details and "reconstructed" in details
        label = browser.find_element(By.ID, "answer-label").text
        assert label in classes
        assert browser.find_element(By.ID, "answer-known").text in {
            "near a class learned",
            "unknown: far from every class learned",
        }
        other = sorted(classes - {label})[0]  # a class already learned: counted, never trained again
        known_before = live_server.get("/v1/model").json()["updater"]["known_class_samples"]
        browser.find_element(By.ID, "correct-label").send_keys(other)
        browser.find_element(By.ID, "correct-submit").click()
        wait_for_text(browser, "try-message", f"sent as {other}: in the feedback log at")
        assert live_server.get("/v1/model").json()["updater"]["known_class_samples"] == known_before + 1

        button = browser.find_element(By.CSS_SELECTOR, f'button.rollback[data-version="{served}"]')
        button.click()
        wait_for_text(browser, "versions-message", f"version {served} published")
        live_server.wait_for_version(served)
        wait_for_text(browser, "serving", f"serving version {served}")
    finally:
        publish(live_server.state_dir, newest)
        live_server.wait_for_version(newest)


def test_the_console_asks_for_the_token_when_the_server_wants_one(predictor, browser):
    app = build_http_app(InProcessBackend(predictor), LimitsConfig(), token=TOKEN)
    with served_on_loopback(app) as url:
        browser.get(url + "/")
        wait_for_text(browser, "serving", "serving version 2")
        browser.find_element(By.ID, "try-text").send_keys("a blue bus")
        browser.find_element(By.ID, "try-submit").click()
        wait_for_text(browser, "answer-details", "version 2")  # predictions need no token here
        browser.find_element(By.ID, "correct-label").send_keys("dog")
        browser.find_element(By.ID, "correct-submit").click()
        WebDriverWait(browser, PAGE_SECONDS).until(lambda page: page.find_element(By.ID, "token").is_displayed())
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "token-submit").click()
        # with the token the request gets through to a server that has no updater: its refusal is shown
        wait_for_text(browser, "try-message", "no updater is running")
        assert browser.execute_script("return sessionStorage.getItem('rebq-token')") == TOKEN
        browser.execute_script("sessionStorage.clear()")
