import subprocess
import sys

import httpx
import pytest

from model.dataset import Sample
from serving.feed import FeedError, feed, post_with_retries
from tests.learning_data import write_jsonl_dataset
from updater.feedback_log import FeedbackLog

BATCH = [Sample(id="first", text="a", label="x"), Sample(id="second", text="b", label="y")]


def client_answering(*answers):
    replies = iter(answers)
    seen = []

    def handle(request):
        seen.append(request)
        status, body, headers = next(replies)
        return httpx.Response(status, json=body, headers=headers)

    return httpx.Client(transport=httpx.MockTransport(handle)), seen


def test_503_is_retried_until_accepted():
    client, seen = client_answering(
        (503, {"detail": "busy"}, {"retry-after": "0"}),
        (503, {"detail": "busy"}, {"retry-after": "0"}),
        (202, {"accepted": 2, "offset": 9}, {}),
    )
    assert post_with_retries(client, "http://x/v1/feedback", {}, BATCH) == {"accepted": 2, "offset": 9}
    assert len(seen) == 3


def test_a_refusal_names_the_sample():
    detail = "samples[1].image: not valid base64"
    client, seen = client_answering((422, {"field": "samples[1].image", "detail": detail}, {}))
    with pytest.raises(FeedError, match=r"sample 'second': 422: samples\[1\].image: not valid base64"):
        post_with_retries(client, "http://x/v1/feedback", {}, BATCH)
    assert len(seen) == 1


def test_feed_a_file_and_standard_input_to_the_live_server(live_server, tmp_path):
    data = write_jsonl_dataset(tmp_path, ["dog", "bus"], per_class=3)
    log = FeedbackLog(live_server.state_dir / "feedback")
    before = log.end
    result = feed(str(data), live_server.url, task=None, batch_size=4)
    assert (result.accepted, result.batches) == (6, 2) and result.offset >= before + 6
    command = [sys.executable, "-m", "serving.cli", "feed", "-", "--url", live_server.url, "--batch", "5"]
    done = subprocess.run(command, input=data.read_bytes(), capture_output=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert b"accepted 6 samples in 2 requests" in done.stdout
    assert FeedbackLog(live_server.state_dir / "feedback").end >= before + 12


def test_feed_only_some_labels(live_server, tmp_path):
    data = write_jsonl_dataset(tmp_path, ["dog", "bus"], per_class=3)
    result = feed(str(data), live_server.url, task=None, batch_size=8, labels=["bus"], limit=2)
    assert (result.accepted, result.batches) == (2, 1)
    with pytest.raises(FeedError, match="--labels: cat not in"):
        feed(str(data), live_server.url, task=None, batch_size=8, labels=["cat"])
