"""What `rebq-serve serve` tells Ray and Serve, where it says the API is, and how its stop is bounded; no Ray
started here."""

import socket
import threading

from serving.cli import announcement
from serving.config import AppConfig, RayConfig, ServerConfig
from serving.launcher import Step, addresses, ingress_environment, node_answers


def app(**server) -> AppConfig:
    return AppConfig(server=ServerConfig(**server), ray=RayConfig(metrics_port=9100))


def test_direct_ingress_hands_the_replicas_exactly_their_ports():
    variables = ingress_environment(ServerConfig(port=9000, replicas=2))
    assert variables["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    allocated = range(
        int(variables["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"]),
        int(variables["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"]),  # Serve's allocator excludes the end
    )
    assert list(allocated) == [9000, 9001]
    assert variables["RAY_SERVE_PORT_QUARANTINE_S"] == "0"  # a replacement takes its port back at once


def test_proxy_ingress_turns_direct_ingress_off():
    variables = ingress_environment(ServerConfig(ingress="proxy"))
    assert variables["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "0"
    assert not any("DIRECT_INGRESS_M" in name for name in variables)


def test_one_replica_is_the_api_and_the_proxy_is_announced_beside_it():
    where = addresses(app(port=9000))
    assert where.api == "http://127.0.0.1:9000" and where.proxy == "http://127.0.0.1:9001"
    text = announcement(where)
    assert "API      http://127.0.0.1:9000/v1/predict" in text
    assert "proxy    http://127.0.0.1:9001/v1/predict" in text
    assert "docs     http://127.0.0.1:9000/docs" in text and "http://127.0.0.1:9100/metrics" in text


def test_several_replicas_are_reached_through_the_proxy_and_each_is_listed():
    where = addresses(app(port=9000, replicas=3, proxy_port=8500))
    assert where.api == where.proxy == "http://127.0.0.1:8500"
    assert where.replicas == ("http://127.0.0.1:9000", "http://127.0.0.1:9001", "http://127.0.0.1:9002")
    assert "replicas http://127.0.0.1:9000 http://127.0.0.1:9001 http://127.0.0.1:9002" in announcement(where)


def test_proxy_ingress_has_one_address():
    where = addresses(app(port=9000, ingress="proxy"))
    assert where.api == where.proxy == "http://127.0.0.1:9000" and where.replicas == ()
    assert "proxy" not in announcement(where) and "replicas" not in announcement(where)


def test_a_node_answers_while_its_gcs_port_takes_connections():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        assert node_answers(address)
    assert not node_answers(address)


def test_a_step_is_waited_for_until_done_or_no_longer_worth_waiting():
    done = Step(lambda: None)
    assert done.wait(5, worth_waiting=lambda: True) and done.error is None
    failed = Step(lambda: 1 / 0)
    assert failed.wait(5, worth_waiting=lambda: True) and isinstance(failed.error, ZeroDivisionError)
    release = threading.Event()
    blocked = Step(release.wait)
    assert not blocked.wait(0.2, worth_waiting=lambda: True)
    polls = []
    assert not blocked.wait(60, worth_waiting=lambda: polls.append(1) or len(polls) < 3)
    assert len(polls) == 3
    release.set()
    assert blocked.wait(5, worth_waiting=lambda: True)
