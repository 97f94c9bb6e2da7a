"""The README's and docs' examples, run: the configuration is the defaults, every command parses, the API
answers as shown."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from model.published import publish
from serving.cli import build_parser
from serving.config import AppConfig
from tests.images import drawn_image

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "\n".join(page.read_text() for page in PAGES)


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TEXT, flags=re.S)


def block_after(marker: str) -> str:
    assert TEXT.count(marker) == 1, marker
    start = TEXT.index(marker)
    return re.search(r"```\w*\n(.*?)```", TEXT[start:], flags=re.S).group(1)


def commands(block: str) -> list[str]:
    """Shell lines with continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_configuration_block_is_the_defaults():
    (block,) = [b for b in fenced_blocks("yaml") if b.startswith("backbone:")]
    assert AppConfig.model_validate(yaml.safe_load(block)) == AppConfig()


def test_every_documented_command_parses():
    parser = build_parser()
    lines = [line for block in fenced_blocks("sh") for line in commands(block) if "rebq-serve " in line]
    assert len(lines) >= 6
    for line in lines:
        words = shlex.split(re.sub(r"\[([^\]]*)\]", lambda m: m.group(1).split("|")[0], line), comments=True)
        programs = [i for i, word in enumerate(words) if word.endswith("rebq-serve")]
        if not programs:  # only named in a comment
            continue
        parser.parse_args(words[programs[0] + 1 :])  # exits (fails the test) on an unknown flag or choice


def test_api_examples_answer(live_server, tmp_path):
    image = tmp_path / "picture.jpg"
    drawn_image("disk", 64).save(image, format="JPEG")
    answers = run_lines("<!-- tested example: api -->", live_server.url, image)
    both, text_only, image_only, model, refused, accepted, dropped, rolled_back = answers
    classes = sum(len(task["classes"]) for task in model["tasks"])
    assert both["missing"] == [] and len(both["top_k"]) == min(3, classes)
    assert text_only["missing"] == ["image"] and text_only["reconstructed"] is True
    assert image_only["missing"] == ["text"] and len(image_only["top_k"]) == 2
    assert model["version"] == both["model_version"] and model["tasks"]
    assert refused == {"field": "image", "detail": "image and text are both missing: send at least one of them"}
    assert accepted["accepted"] == 1 and accepted["offset"] >= 1
    assert dropped == {"task": "birds", "dropped": 1}
    assert rolled_back == {"version": 1}
    live_server.wait_for_version(1)
    publish(live_server.state_dir, model["version"])  # leave the server as it was
    live_server.wait_for_version(model["version"])


def run_lines(block_marker: str, url: str, image) -> list:
    lines = commands(block_after(block_marker))
    assert lines[0].startswith("IMG=")
    answers = []
    for line in lines[1:]:
        run = line.replace("http://127.0.0.1:8000", url)
        result = subprocess.run(
            ["bash", "-c", run], capture_output=True, text=True, timeout=60, env={**os.environ, "IMG": str(image)}
        )
        assert result.returncode == 0, result.stderr
        answers.append(json.loads(result.stdout))
    return answers


def test_open_inference_examples_answer(live_server, tmp_path):
    image = tmp_path / "picture.jpg"
    drawn_image("disk", 64).save(image, format="JPEG")
    metadata, text_only, two_rows = run_lines("<!-- tested example: v2 -->", live_server.url, image)
    assert metadata["name"] == "rebq" and [t["name"] for t in metadata["inputs"]] == ["text", "image"]
    outputs = {output["name"]: output for output in text_only["outputs"]}
    assert outputs["missing"]["data"] == ["image"] and outputs["model_version"]["data"] == [live_server.version()]
    outputs = {output["name"]: output for output in two_rows["outputs"]}
    assert outputs["missing"]["data"] == ["", "text"] and outputs["top_k_labels"]["shape"] == [2, 2]


def test_tritonclient_example_runs(live_server, tmp_path):
    image = tmp_path / "picture.jpg"
    drawn_image("disk", 64).save(image, format="JPEG")
    code = block_after("<!-- tested example: tritonclient -->")
    code = code.replace("127.0.0.1:8000", live_server.url.removeprefix("http://"))
    code = code.replace("../shared/data/tuxpaint-cmml/images/2353f517a46c.jpg", str(image))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    label, score, known = result.stdout.split()
    served = {name for task in live_server.get("/v1/model").json()["tasks"] for name in task["classes"]}
    assert label in served and 0 < float(score) <= 1 and known in {"True", "False"}
