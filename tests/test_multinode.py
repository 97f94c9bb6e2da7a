"""Two raylets on 127.0.0.1: two replicas on different nodes, a published version reaching both."""

import json
import os
import subprocess
import sys

from tests.live_server import free_port
from tests.served_state import SMALL, learn_and_publish


def test_two_nodes_two_replicas_one_published_version(tmp_path, tiny_config, tiny_backbone):
    state_dir = tmp_path / "state"
    learn_and_publish(tiny_backbone, state_dir, "first", ["dog", "bus"])
    config = {
        "backbone": json.loads(tiny_config.model_dump_json()),
        "learner": json.loads(SMALL.model_dump_json()),
        "trainer": {"epochs": 2},
        "server": {"state_dir": str(state_dir), "replicas": 2, "cpus_per_replica": 1, "state_poll_s": 0.1},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    done = subprocess.run(
        [sys.executable, "-m", "tests.two_nodes", str(tmp_path / "config.json"), str(free_port())],
        capture_output=True,
        text=True,
        timeout=420,
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT ") :])
    assert len(result["nodes"]) == 2
    assert sorted(result["replica_nodes"].values()) == result["nodes"]  # one replica on each node
    assert result["versions_before"] == [1, 1]
    assert result["versions_after"] == [result["published"]] * 2 and result["published"] == 2
    assert result["feedback_status"] == 202  # the updater answers, wherever it was placed
    assert result["sockets"] > 10 and result["outward_sockets"] == []  # both raylets stay on loopback
