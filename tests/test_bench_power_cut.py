"""`bench power-cut`: tasks cycled through relabelled classes, and two power cuts of a real `serve` command on tiny
towers, each followed by a restart that loses nothing acknowledged and serves the published version."""

import json
import re
import subprocess
import sys
import time

from benchmarks.power_cut import PowerCutConfig, format_report, main
from benchmarks.processes import kill_session, session_processes
from benchmarks.task_feeder import task_batches
from model.dataset import Sample
from serving.config import AppConfig, RayConfig
from tests.learning_data import write_jsonl_dataset
from tests.served_state import SMALL


def test_each_task_is_new_and_takes_the_classes_in_turn():
    data = [Sample(id=f"{label}-{k}", text=f"{label} {k}", label=label) for label in "abc" for k in range(3)]
    data.append(Sample(id="d-0", text="d", label="d"))  # too few samples to be fed
    tasks = task_batches(data, classes_per_task=2, per_class=2)
    first, second = next(tasks), next(tasks)
    assert [(s.task, s.label, s.text) for s in first] == [
        ("cut-0", "a-0", "a 0"),
        ("cut-0", "a-0", "a 1"),
        ("cut-0", "b-0", "b 0"),
        ("cut-0", "b-0", "b 1"),
    ]
    assert [(s.task, s.label, s.text) for s in second] == [
        ("cut-1", "c-1", "c 2"),  # task N starts at sample N * per_class of each class, cycling
        ("cut-1", "c-1", "c 0"),
        ("cut-1", "a-1", "a 2"),
        ("cut-1", "a-1", "a 0"),
    ]


def test_a_power_cut_kills_every_process_of_the_session():
    grandchild = "import time; time.sleep(60)"
    child = (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {grandchild!r}]); time.sleep(60)"
    )
    leader = subprocess.Popen([sys.executable, "-c", child], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(session_processes(leader.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kill_session(leader.pid) == 2
        assert session_processes(leader.pid) == []
    finally:
        leader.kill()
        leader.wait()


def test_two_power_cuts_of_a_live_server(tmp_path, tiny_config):
    data = write_jsonl_dataset(tmp_path / "data", ["dog", "bus", "car", "horse"], per_class=8)
    base = AppConfig(backbone=tiny_config, learner=SMALL, ray=RayConfig(num_cpus=2))
    config = PowerCutConfig(
        data=data, work_dir=tmp_path / "work", cycles=2, seed=1, kill_after_s=(6.0, 10.0), restart_timeout_s=240
    )
    result = main(config, base, tmp_path / "power-cut.json")
    assert result["failure"] is None, result
    assert result["cycles"] == 2 and len(result["cycle_records"]) == 2
    assert all(cycle["killed_processes"] >= 6 for cycle in result["cycle_records"])  # command, Ray, workers
    assert result["acknowledged_samples"] > 0 and result["lost_samples"] == 0
    assert result["versions_published"] and result["served_not_published"] == 0 and result["invalid_answers"] == 0
    assert result["updater_restarts"] == 0 and result["stop_s"] <= 10
    assert result["passed"] and re.search(r"^verdict +ok$", format_report(result), flags=re.M)
    assert json.loads((tmp_path / "power-cut.json").read_text())["cycle_records"] == result["cycle_records"]
