import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray reads it once, at import: keep it on loopback

from model.backbone import load_backbone  # noqa: E402
from tests.tiny_towers import tiny_backbone_config  # noqa: E402


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny-towers")


@pytest.fixture(scope="session")
def tiny_config(tiny_root):
    return tiny_backbone_config(tiny_root)


@pytest.fixture(scope="session")
def tiny_vit_config(tiny_root):
    return tiny_backbone_config(tiny_root, image_kind="vit")


@pytest.fixture(scope="session")
def tiny_backbone(tiny_config):
    return load_backbone(tiny_config)


@pytest.fixture(scope="session")
def tiny_vit_backbone(tiny_vit_config):
    return load_backbone(tiny_vit_config)


@pytest.fixture(scope="session")
def live_session(tiny_config, tiny_backbone, tmp_path_factory):
    """A real local Ray serving tiny towers; started on first use, stopped at the end of the session."""
    from serving.launcher import shutdown
    from tests.live_server import start_live_server

    state_dir = tmp_path_factory.mktemp("live-state")
    ray_dir = Path(tempfile.mkdtemp(prefix="rebq-ray-"))  # short: Ray's socket paths must fit in 107 bytes
    try:
        yield start_live_server(tiny_config, tiny_backbone, state_dir, ray_dir)
    finally:
        shutdown()
        shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.fixture
def live_server(live_session):
    """The live server as every test finds it, whatever ran before: version 1 served, nothing buffered."""
    live_session.check_baseline()
    yield live_session
    live_session.restore_baseline()


@pytest.fixture(scope="module")
def browser():
    """Headless chromium that reaches 127.0.0.1 only (`tests/browser.py`)."""
    from tests.browser import start_browser

    driver = start_browser()
    yield driver
    driver.quit()
