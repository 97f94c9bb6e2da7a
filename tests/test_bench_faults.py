"""`bench faults`: failures counted by window, acknowledged samples looked up in the log, and the bench live."""

import base64
import json
import re
from dataclasses import replace

from benchmarks.faults import FAULTS, FaultsConfig, failed_during, format_report, main
from benchmarks.feedback_ledger import Acknowledged, SentSample, lost_samples
from benchmarks.swap import Answer
from tests.learning_data import write_jsonl_dataset
from tests.updaters import feedback
from updater.feedback_log import FeedbackLog

QUICK = {  # a small task, short pauses: about 20 s of faults on tiny towers
    "concurrency": 2,
    "samples_per_class": 8,
    "feedback_batch": 2,
    "feedback_interval_s": 0.3,
    "settle_s": 1.0,
    "corrupt_hold_s": 1.5,
    "fault_timeout_s": 120,
    "max_seconds": 600,
}


def test_failures_are_counted_in_the_window_they_overlap():
    answers = [
        Answer(started=1.0, seconds=0.5, status=0, version=None, batch=None),  # over before the window
        Answer(started=9.5, seconds=1.0, status=500, version=None, batch=None),  # in flight as it opens
        Answer(started=12.0, seconds=0.1, status=503, version=None, batch=None),
        Answer(started=12.0, seconds=0.1, status=200, version=3, batch="a-1"),
        Answer(started=20.5, seconds=0.1, status=0, version=None, batch=None),  # after it closed
    ]
    assert failed_during(answers, 10.0, 20.0) == 2


def test_an_acknowledged_sample_is_lost_unless_the_log_holds_it_as_sent(tmp_path):
    folder = tmp_path / "feedback"
    new = feedback(["dog", "bus"], 2, task="pets")
    FeedbackLog(folder).append(new)  # offsets 0..3
    sent = [SentSample(n.label, n.task, n.text, base64.b64encode(n.image_bytes).decode()) for n in new]
    assert lost_samples([Acknowledged(2, tuple(sent[:2])), Acknowledged(4, tuple(sent[2:]))], folder) == 0
    relabelled = replace(sent[3], label="cat")
    other_picture = replace(sent[2], image=sent[0].image)
    acknowledged = [
        Acknowledged(4, (other_picture, relabelled)),  # both differ from records 2 and 3
        Acknowledged(6, (sent[0], sent[1])),  # records 4 and 5 were never written
    ]
    assert lost_samples(acknowledged, folder) == 4


def test_bench_faults_against_the_live_server(live_server, tmp_path):
    data = write_jsonl_dataset(tmp_path, ["dog", "bus", "car", "horse"], per_class=8)
    where = {"url": live_server.url, "state_dir": live_server.state_dir, "ray": live_server.config.ray}
    config = FaultsConfig(data=data, **where, **QUICK)
    result = main(config, tmp_path / "faults.json")
    faults = {fault["name"]: fault for fault in result["faults"]}
    assert list(faults) == list(FAULTS)
    assert all(fault["passed"] for fault in faults.values()), result["faults"]
    assert result["lost_samples"] == 0 and result["acknowledged_samples"] >= 2 * 16 + 2
    # one replica: only while it is replaced may requests fail
    assert result["failed_requests_outside_faults"] == 0 and result["requests"] > 50
    assert [name for name, fault in faults.items() if fault["failed_requests_during"]] in ([], ["replica_killed"])
    info = live_server.get("/v1/model").json()
    learned = info["tasks"][-1]  # the task whose training the kill cut short, trained again
    assert learned["name"].startswith("faults-") and learned["classes"] == ["car", "horse"]
    assert faults["corrupted_state_published"]["versions_served"] == [info["version"]]
    wreck = info["updater"]["last_training"]
    assert wreck["task"].startswith("wreck-") and not wreck["published"] and "would lose" in wreck["reason"]
    assert not any(task["name"].startswith("wreck-") for task in info["tasks"])
    assert json.loads((tmp_path / "faults.json").read_text())["faults"] == result["faults"]
    report = format_report(result)
    assert all(re.search(rf"^{name} +ok, ", report, flags=re.M) for name in FAULTS) and "0 of them lost" in report
