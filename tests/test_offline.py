import json

import pytest
import yaml

from benchmarks.cmml_plot import budget_points
from model.config import LearnerConfig
from model.state import latest_state, list_versions
from model.strategies import STRATEGIES
from serving.cli import main
from tests.learning_data import write_config, write_jsonl_dataset


def test_train_writes_one_version_per_task_and_resumes(tmp_path, tiny_config, capsys):
    data = write_jsonl_dataset(tmp_path / "data", ["dog", "bus", "tree", "cake"], per_class=6)
    config = write_config(tmp_path / "config.yaml", tiny_config)
    state_dir = tmp_path / "state"
    args = ["train", "--data", str(data), "--state-dir", str(state_dir), "--tasks", "2", "--config", str(config)]
    assert main(args) == 0
    assert list_versions(state_dir) == [1, 2]
    state = latest_state(state_dir)
    assert [task.classes for task in state.manifest.tasks] == [("dog", "bus"), ("tree", "cake")]
    assert state.manifest.notes["training"]["samples"] == 10  # one of each class's 6 held back
    assert state.manifest.notes["calibration_samples"] == 4  # both tasks' held-back samples
    assert (state.tensors["calibration.temperature"] != 1).all()  # fitted, not the uncalibrated default
    assert capsys.readouterr().out.splitlines() == ["version 1: dog, bus", "version 2: tree, cake"]
    assert main(args) == 0  # everything learned already: no new version
    assert list_versions(state_dir) == [1, 2]


def test_train_follows_task_fields(tmp_path, tiny_config):
    names = {"dog": "pets", "bus": "roads", "tree": "pets"}
    data = write_jsonl_dataset(tmp_path / "data", ["dog", "bus", "tree"], per_class=3, task_names=names)
    config = write_config(tmp_path / "config.yaml", tiny_config, epochs=1)
    assert main(["train", "--data", str(data), "--state-dir", str(tmp_path / "s"), "--config", str(config)]) == 0
    tasks = latest_state(tmp_path / "s").manifest.tasks
    assert [(task.name, task.classes) for task in tasks] == [("pets", ("dog", "tree")), ("roads", ("bus",))]


def test_bench_cmml_runs_every_method(tmp_path, tiny_config, capsys):
    data = write_jsonl_dataset(tmp_path / "data", ["dog", "bus", "tree", "cake"], per_class=6)
    config = write_config(tmp_path / "config.yaml", tiny_config, epochs=1)
    out, plot = tmp_path / "cmml.json", tmp_path / "cmml.png"
    args = [
        "bench",
        "cmml",
        "--data",
        str(data),
        "--tasks",
        "2",
        "--seeds",
        "1",
        "--min-per-class",
        "4",
        "--missing-rate",
        "0.5",
        "--out",
        str(out),
        "--plot",
        str(plot),
        "--config",
        str(config),
    ]
    assert main(args) == 0
    results = json.loads(out.read_text())
    methods = (*STRATEGIES, "prompt_no_rec", "head_only", "joint")
    assert set(results["methods"]) == {"rebq", *methods}
    for summary in results["methods"].values():
        assert len(summary["acc_matrix"]) == 2 and len(summary["acc_matrix"][1]) == 2
        assert 0 <= summary["ap"] <= 100
        assert set(summary["by_missing"]) == {"complete", "image_missing", "text_missing", "missing"}
        assert 0 < summary["latency_ms"] < 10_000
        assert 0 <= summary["ece"] <= 100 and 0 <= summary["ece_uncalibrated"] <= 100
    for method, summary in results["methods"].items():  # joint learns every class at once: none unknown
        assert ("unknown_auroc" in summary) == (method != "joint")
        assert 0 <= summary.get("unknown_auroc", 0) <= 1 and 0 <= summary.get("unknown_auroc_msp", 0) <= 1
    assert results["methods"]["joint"]["forgetting"] == 0.0
    paired = results["paired"]["rebq_minus_prompt_no_rec"]
    ours, theirs = (results["methods"][name]["by_missing"]["missing"] for name in ("rebq", "prompt_no_rec"))
    assert paired["missing"]["mean"] == pytest.approx(ours - theirs) and paired["missing"]["seeds"] == 1
    ap_ours, ap_theirs = (results["methods"][name]["ap"] for name in ("rebq", "prompt_no_rec"))
    assert paired["ap"]["mean"] == pytest.approx(ap_ours - ap_theirs)
    assert set(results["references"]) == {"mean_fill", "marginalised"}
    for name, reference in results["references"].items():
        assert set(reference["by_missing"]) == {"complete", "image_missing", "text_missing", "missing"}
        assert results["paired"][f"rebq_minus_{name}"]["missing"]["mean"] == pytest.approx(
            ours - reference["by_missing"]["missing"]
        )
    assert set(results["paired"]) == {f"rebq_minus_{name}" for name in (*methods, "mean_fill", "marginalised")}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:2] == ["method", "AP"]
    line = f"rebq - prompt_no_rec, rows missing a modality: {ours - theirs:+.2f} (standard error"
    assert any(printed_line.startswith(line) for printed_line in printed)
    assert main(args + ["--methods", "head_only"]) == 0
    assert set(json.loads(out.read_text())["methods"]) == {"head_only"}
    assert json.loads(out.read_text())["paired"] == {}  # nothing to pair without rebq


def test_bench_cmml_sweeps_the_exemplar_budget(tmp_path, tiny_config):
    data = write_jsonl_dataset(tmp_path / "data", ["dog", "bus", "tree", "cake"], per_class=6)
    config = write_config(tmp_path / "config.yaml", tiny_config, epochs=1)
    out, plot = tmp_path / "cmml.json", tmp_path / "cmml.png"
    args = ["bench", "cmml", "--data", str(data), "--tasks", "2", "--seeds", "1", "--min-per-class", "4"]
    args += ["--methods", "head_only", "--exemplar-budgets", "0", "16", "--out", str(out), "--plot", str(plot)]
    assert main([*args, "--config", str(config)]) == 0
    results = json.loads(out.read_text())
    assert list(results["methods"]) == ["head_only", "exemplar_replay_0KiB", "exemplar_replay_16KiB"]
    assert budget_points(results["methods"]) == [
        (kib, results["methods"][f"exemplar_replay_{kib}KiB"]["ap"], 0.0) for kib in (0, 16)
    ]
    assert (tmp_path / "cmml-budgets.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(args + ["--methods", "rebqq"]) == 2  # refused, naming the choices


def test_a_changed_learner_is_refused_naming_the_field(tmp_path, tiny_config, caplog):
    data = write_jsonl_dataset(tmp_path / "data", ["dog", "bus", "tree", "cake"], per_class=3)
    config = write_config(tmp_path / "config.yaml", tiny_config, epochs=1)
    state_dir = tmp_path / "state"
    base = ["--state-dir", str(state_dir), "--config", str(config)]
    assert main(["train", "--data", str(data), "--tasks", "1", *base]) == 0
    changed = yaml.safe_load(config.read_text())
    trained_with = changed["learner"].get("strategy", LearnerConfig().strategy)
    changed["learner"]["strategy"] = "fwd_prompt" if trained_with == "first_task" else "first_task"
    config.write_text(yaml.safe_dump(changed))
    caplog.clear()
    assert main(["train", "--data", str(data), "--tasks", "2", *base]) == 2
    wanted = changed["learner"]["strategy"]
    assert f"learner.strategy: '{wanted}' configured, '{trained_with}' in version 1" in caplog.text
    assert list_versions(state_dir) == [1]
    caplog.clear()
    assert main(["serve", *base]) == 2  # refused before anything starts
    assert "set it back, or start a new state directory" in caplog.text
