"""`rebq-serve feed`: stream a JSONL data set to a server's /v1/feedback, in batches, with retries on 503."""

from __future__ import annotations

import base64
import logging
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from tqdm import tqdm

from model.dataset import Sample, load_jsonl, read_samples

log = logging.getLogger(__name__)

RETRIES = 8


class FeedError(RuntimeError):
    """The server refused a batch: the message names the sample and the field."""


@dataclass
class FeedResult:
    accepted: int
    offset: int | None
    batches: int


def read_data_set(path: str) -> list[Sample]:
    """A JSONL file, or `-` for standard input (image paths then relative to the working directory)."""
    if path == "-":
        return read_samples(sys.stdin.buffer, Path.cwd(), "<stdin>")
    return load_jsonl(Path(path))


def feedback_body(samples: Sequence[Sample], task: str | None) -> dict:
    return {
        "samples": [
            {
                "text": sample.text,
                "image": base64.b64encode(sample.image_path.read_bytes()).decode() if sample.image_path else None,
                "label": sample.label,
                "task": task or sample.task,
            }
            for sample in samples
        ]
    }


def _which_sample(detail: str, batch: Sequence[Sample]) -> str:
    found = re.match(r"samples\[(\d+)\]", detail)
    return f"sample {batch[int(found.group(1))].id!r}: " if found and int(found.group(1)) < len(batch) else ""


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except (ValueError, AttributeError):
        return response.text or response.reason_phrase


def post_with_retries(client: httpx.Client, url: str, body: dict, batch: Sequence[Sample]) -> dict:
    """POST once accepted; 503 and connection failures are retried with back-off, a 4xx is final."""
    delay = 0.5
    for attempt in range(RETRIES + 1):
        try:
            response = client.post(url, json=body)
        except httpx.TransportError as error:
            if attempt == RETRIES:
                raise FeedError(f"{url}: {error}") from error
            log.warning("%s: %s; retrying in %.1f s", url, error, delay)
        else:
            if response.status_code == 202:
                return response.json()
            if response.status_code != 503 or attempt == RETRIES:
                detail = _detail(response)
                raise FeedError(f"{_which_sample(detail, batch)}{response.status_code}: {detail}")
            delay = float(response.headers.get("retry-after", delay))
            log.warning("%s answered 503; retrying in %.1f s", url, delay)
        time.sleep(delay)
        delay = min(delay * 2, 30)
    raise AssertionError("unreachable")


def feed(
    path: str,
    url: str,
    task: str | None,
    batch_size: int,
    labels: Sequence[str] | None = None,
    limit: int | None = None,
    timeout_s: float = 60,
    token: str | None = None,
) -> FeedResult:
    """Send the samples of `path` (only those of `labels`, at most `limit` of them) in batches."""
    samples = read_data_set(path)
    if labels:
        unknown = sorted(set(labels) - {sample.label for sample in samples})
        if unknown:
            raise FeedError(f"--labels: {', '.join(unknown)} not in {path}")
        samples = [sample for sample in samples if sample.label in set(labels)]
    samples = samples[:limit]
    endpoint = url.rstrip("/") + "/v1/feedback"
    accepted, offset, batches = 0, None, 0
    progress = tqdm(total=len(samples), desc="feedback", unit="sample")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=timeout_s, headers=headers) as client, progress as bar:
        for start in range(0, len(samples), batch_size):
            batch = samples[start : start + batch_size]
            answer = post_with_retries(client, endpoint, feedback_body(batch, task), batch)
            accepted, offset, batches = accepted + answer["accepted"], answer["offset"], batches + 1
            bar.update(len(batch))
    return FeedResult(accepted, offset, batches)
