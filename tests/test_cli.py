import json

import pytest
import yaml

from serving.cli import main
from serving.config import ConfigError, load_config


def write_config(path, backbone_config):
    path.write_text(yaml.safe_dump({"backbone": json.loads(backbone_config.model_dump_json())}))
    return path


def test_bench_towers_writes_json_and_table(tmp_path, tiny_config, capsys):
    config = write_config(tmp_path / "config.yaml", tiny_config)
    out = tmp_path / "towers.json"
    assert main(["bench", "towers", "--out", str(out), "--repeats", "2", "--config", str(config)]) == 0
    results = json.loads(out.read_text())
    for modality in ("text", "image"):
        for batch in ("batch_1", "batch_16"):
            cell = results[modality][batch]
            assert set(cell) == {"torch_ms", "onnx_ms", "onnx_prompted_ms", "onnx_int8_ms"}
            assert all(value > 0 for value in cell.values())
    assert results["config"]["int8_backbone"]["text"]["precision"] == "int8"
    assert results["config"]["backbone"]["image"]["precision"] == "fp32"
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:2] == ["tower", "batch"]
    assert "int8 speed-up" in table.splitlines()[0]
    assert len(table.splitlines()) == 5


def test_bench_shapes_times_every_call_free_and_fixed(tmp_path, tiny_config, capsys):
    config = write_config(tmp_path / "config.yaml", tiny_config)
    out = tmp_path / "shapes.json"
    assert main(["bench", "shapes", "--out", str(out), "--device", "cpu", "--config", str(config)]) == 0
    results = json.loads(out.read_text())
    calls = len(results["sequence"])
    assert calls > 2 and len(set(results["sequence"])) > 2
    for variant in ("free_shapes", "fixed_sizes"):
        assert len(results[variant]["ms"]) == calls and all(ms > 0 for ms in results[variant]["ms"])
        assert results[variant]["total_ms"] == pytest.approx(sum(results[variant]["ms"]))
    assert results["config"]["provider"] == "CPUExecutionProvider"
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("image tower on CPUExecutionProvider") and len(table) == 3


def test_bad_config_names_the_field(tmp_path, caplog):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone:\n  text:\n    max_length: 2\n")
    try:
        load_config(bad)
    except ConfigError as error:
        assert "backbone.text.max_length" in str(error)
    else:
        raise AssertionError("a max_length of 2 was accepted")
    assert main(["bench", "towers", "--out", str(tmp_path / "x.json"), "--config", str(bad)]) == 2
    assert "backbone.text.max_length" in caplog.text


def test_unknown_config_key_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone:\n  txt: {}\n")
    try:
        load_config(bad)
    except ConfigError as error:
        assert "backbone.txt" in str(error)
    else:
        raise AssertionError("an unknown key was accepted")


def test_bench_faults_without_a_server_says_so(tmp_path, caplog):
    from tests.learning_data import write_jsonl_dataset
    from tests.live_server import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    data = write_jsonl_dataset(tmp_path, ["dog"], per_class=1)
    assert main(["bench", "faults", "--url", url, "--data", str(data), "--out", str(tmp_path / "f.json")]) == 2
    assert "connect" in caplog.text.lower() and not (tmp_path / "f.json").exists()
