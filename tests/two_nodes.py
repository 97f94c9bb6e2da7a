"""Run as a program by test_multinode.py: two raylets on 127.0.0.1, two replicas, one published version.

`ray start` refuses to add a worker node while `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps Ray on
loopback, so the second raylet is started the way Ray's own tests start one (`ray.cluster_utils`).
Prints one JSON line: the nodes, which node each replica runs on, and what each replica serves.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import httpx

MIB = 1024 * 1024


def replicas_seen(url: str, calls: int = 40) -> dict[str, dict]:
    seen: dict[str, dict] = {}
    for _ in range(calls):
        health = httpx.get(url + "/healthz", timeout=10).json()
        seen[health["replica"]] = health
    return seen


def seen_if(seen: dict, condition) -> dict | None:
    return seen if condition(seen) else None


def wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(what)


def main(config_path: str, port: int) -> None:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    # two raylets share 127.0.0.1, so replicas cannot each own a port there: Serve's proxy is the ingress
    os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "0"
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from benchmarks.processes import RAY_PROCESS_WORDS, processes_matching
    from model.backbone import load_backbone
    from serving.config import load_config
    from serving.deployment import APP_NAME, build_app
    from tests.served_state import learn_and_publish
    from tests.sockets import off_loopback, tcp_endpoints

    config = load_config(Path(config_path))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 100 * MIB, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1, object_store_memory=100 * MIB)
    try:
        ray.init(address=cluster.address)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(config), name=APP_NAME, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        before = wait_until(lambda: seen_if(replicas_seen(url), lambda s: len(s) == 2), 120, "two replicas")
        torch_backbone = load_backbone(config.backbone)
        state_dir = config.server.state_dir
        published = learn_and_publish(torch_backbone, state_dir, "second", ["tree", "cake"]).version
        after = wait_until(
            lambda: seen_if(replicas_seen(url), lambda s: {h["version"] for h in s.values()} == {published}),
            60,
            "the new version on every replica",
        )
        feedback = httpx.post(url + "/v1/feedback", json={"samples": [{"text": "a red fish", "label": "fish"}]})
        endpoints = tcp_endpoints([os.getpid(), *processes_matching(RAY_PROCESS_WORDS)])
        result = {
            "nodes": sorted(node["NodeID"] for node in ray.nodes() if node["Alive"]),
            "replica_nodes": {replica: health["node"] for replica, health in before.items()},
            "versions_before": sorted(health["version"] for health in before.values()),
            "published": published,
            "versions_after": sorted(health["version"] for health in after.values()),
            "feedback_status": feedback.status_code,
            "sockets": len(endpoints),
            "outward_sockets": off_loopback(endpoints),
        }
        sys.stdout.write("RESULT " + json.dumps(result) + "\n")
        serve.shutdown()
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
