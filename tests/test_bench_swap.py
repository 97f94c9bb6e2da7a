from benchmarks.swap import Answer, LoadLoop, SwapConfig, main, mixed_version_batches, propagation_s
from tests.learning_data import write_jsonl_dataset
from tests.live_server import free_port
from tests.served_state import learn_and_publish


def answer(started, version, batch=None, status=200):
    return Answer(started=started, seconds=0.01, status=status, version=version, batch=batch)


def test_propagation_is_measured_to_the_last_old_answer():
    answers = [answer(9.0, 1), answer(10.1, 1), answer(10.2, 2), answer(10.3, 1), answer(10.5, 2), answer(10.9, 2)]
    assert abs(propagation_s(answers, 10.0, 2) - 0.5) < 1e-9
    assert propagation_s([answer(10.1, 1)], 10.0, 2) is None


def test_batches_naming_two_versions_are_counted():
    batches = [(1, "a-1"), (1, "a-1"), (2, "a-2"), (1, "b-1"), (2, "b-1")]
    answers = [answer(0, version, batch) for version, batch in batches]
    assert mixed_version_batches(answers) == 1


def test_the_load_loop_pauses_after_a_failure_instead_of_hammering():
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: every connection is refused at once
    with LoadLoop(closed, concurrency=2, max_seconds=1.2) as load:
        load._threads[0].join(timeout=10)
    assert all(a.status == 0 for a in load.answers)
    assert 2 <= len(load.answers) <= 2 * (1 + 1.2 / LoadLoop.PAUSE_AFTER_FAILURE_S)  # about 6, not thousands


def test_bench_swap_and_freshness_against_the_live_server(live_server, tmp_path):
    # swaps go between the served version and the one numbered before it
    extra = learn_and_publish(live_server.torch_backbone, live_server.state_dir, "extra", ["apple", "moon"])
    served = extra.version
    live_server.wait_for_version(served)
    data = write_jsonl_dataset(tmp_path, ["hat", "boat"], per_class=10)
    config = SwapConfig(
        url=live_server.url, swaps=4, concurrency=4, interval_s=3.0, baseline_s=2, data=data, freshness_samples=20
    )
    result = main(config, tmp_path / "swap.json")
    assert result["failed_requests"] == 0 and result["mixed_version_batches"] == 0
    assert result["requests"] > 20 and result["versions"] == [served, served - 1]
    # every swap reached every answer before the next one (a swap never seen counts as infinite)
    assert 0 < result["propagation_p50_s"] <= result["propagation_max_s"] < config.interval_s
    assert result["freshness_samples"] == 20 and result["freshness_classes"] == ["boat", "hat"]
    assert result["freshness_s"] > result["freshness_training_s"] > 0
    assert live_server.version() == result["freshness_version"] > served
    assert (tmp_path / "swap.json").exists()
