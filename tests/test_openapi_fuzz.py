"""Schemathesis over the live server's OpenAPI document: whatever it sends to any route, no answer is a 5xx."""

from __future__ import annotations

from datetime import timedelta

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from model.published import publish, published_version
from serving.auth import load_token

EXAMPLES = 20  # per operation and generation mode
BOUNDED = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=10),  # one request; tiny towers answer in milliseconds
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def server_errors(operation, mode: GenerationMode, headers: dict) -> tuple[int, list[str]]:
    """Send `EXAMPLES` generated requests to `operation`: (requests sent, one line per 5xx answer)."""
    sent, errors = 0, []

    @BOUNDED
    @given(operation.as_strategy(generation_mode=mode))
    def send(case) -> None:
        nonlocal sent
        response = case.call(headers=headers, timeout=10)
        sent += 1
        if response.status_code >= 500:
            errors.append(f"{response.status_code} {case.as_curl_command(headers)}: {response.text[:300]}")

    send()
    return sent, errors


def modes_for(operation) -> list[GenerationMode]:
    """Data that breaks the schema too, where there is a body to break."""
    return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if operation.body else [GenerationMode.POSITIVE]


def test_no_generated_request_gets_a_server_error(live_server):
    token = load_token(live_server.config.server.auth)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {"POST /v1/predict", "POST /v1/feedback", "POST /v1/tasks/{name}/train", "GET /healthz"} <= labels
    served = published_version(live_server.state_dir)
    errors, sent = [], {}
    try:
        for operation in operations:
            for mode in modes_for(operation):
                count, found = server_errors(operation, mode, headers)
                sent[f"{operation.label} {mode.value}"] = count
                errors.extend(found)
    finally:  # generated rollbacks and trainings may have moved the served version: put it back
        live_server.wait_for_idle_updater()
        publish(live_server.state_dir, served)
        live_server.wait_for_version(served)
    assert not errors, "\n".join(errors)
    assert len(sent) >= 9 and all(sent.values()), sent  # three bodies fuzzed both ways, every operation sent
