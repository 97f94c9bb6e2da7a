import pytest

from benchmarks.load import (
    LoadConfig,
    Outcome,
    batches_of_served_sizes,
    build_bodies,
    format_report,
    parse_mix,
    patterns_for,
    run_load,
)
from tests.learning_data import write_jsonl_dataset


def test_patterns_follow_the_mix_exactly():
    order = patterns_for({"complete": 0.4, "image_missing": 0.3, "text_missing": 0.3}, 10)
    assert sorted(order) == ["complete"] * 4 + ["image_missing"] * 3 + ["text_missing"] * 3
    assert patterns_for({"complete": 1, "text_missing": 1}, 3).count("complete") in (1, 2)
    assert patterns_for({"complete": 1.0}, 5, seed=1) == ["complete"] * 5


def test_mix_parsing_and_checking(tmp_path):
    assert parse_mix("complete=0.5, text_missing=0.5") == {"complete": 0.5, "text_missing": 0.5}
    with pytest.raises(ValueError, match="name=share"):
        parse_mix("complete:1")
    with pytest.raises(ValueError, match="mix"):
        LoadConfig(url="http://x", data=tmp_path, mix={"audio": 1.0})
    with pytest.raises(ValueError, match="image_missing"):  # a modality's name alone is not a pattern
        LoadConfig(url="http://x", data=tmp_path, mix={"image": 1.0})


def test_batch_sizes_are_recovered_from_answers():
    answers = [Outcome(200, 0.1, 3)] * 6 + [Outcome(200, 0.1, 1)] * 2 + [Outcome(503, 0.1, 0)]
    assert batches_of_served_sizes(answers) == [1, 1, 3, 3]


def test_bench_load_against_the_live_server(live_server, tmp_path):
    data = write_jsonl_dataset(tmp_path, ["dog", "bus"], per_class=3)
    config = LoadConfig(url=live_server.url, data=data, concurrency=4, requests=30, single_requests=5, warmup=2)
    result = run_load(config, live_server.config)
    assert result["errors"] == 0 and result["model_version"] == live_server.get("/v1/model").json()["version"]
    assert result["config"]["requests_by_pattern"] == {"complete": 12, "image_missing": 9, "text_missing": 9}
    assert result["throughput_rps"] > 0 and result["in_process_rps"] > 0
    assert result["served_over_in_process"] == pytest.approx(result["throughput_rps"] / result["in_process_rps"])
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert 1 <= result["mean_batch_size"] <= 4
    assert result["server_rss_mb"] > 100  # Ray's processes were found and measured


def test_bench_load_times_fp32_and_int8_in_turns(live_server, tmp_path):
    data = write_jsonl_dataset(tmp_path, ["dog", "bus"], per_class=3)
    config = LoadConfig(
        url=live_server.url,
        data=data,
        concurrency=2,
        requests=12,
        single_requests=5,
        warmup=0,
        compare_precisions=True,
    )
    result = run_load(config, live_server.config)
    figures = result["precisions"]
    for precision in ("fp32", "int8"):
        assert figures[precision]["served_precision"] == precision
        assert len(figures[precision]["rounds"]) == 2 and figures[precision]["in_process_rps"] > 0
    assert figures["int8_over_fp32"] == pytest.approx(
        figures["int8"]["in_process_rps"] / figures["fp32"]["in_process_rps"]
    )
    assert "int8 / fp32" in format_report(result)


def test_each_pattern_sends_what_the_server_then_names_missing(live_server, tmp_path):
    data = write_jsonl_dataset(tmp_path, ["dog", "bus"], per_class=2)
    config = LoadConfig(url=live_server.url, data=data, requests=6)
    named = {"complete": [], "image_missing": ["image"], "text_missing": ["text"]}
    for pattern, body in build_bodies(config):
        answer = live_server.post("/v1/predict", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["missing"] == named[pattern], pattern
