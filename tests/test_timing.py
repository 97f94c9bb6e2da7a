from benchmarks.timing import interleaved_median_ms


def test_calls_are_timed_in_turns_in_a_shuffled_order():
    seen: list[str] = []
    calls = {name: (lambda name=name: seen.append(name)) for name in "abcd"}
    medians = interleaved_median_ms(calls, repeats=20, warmup=1)
    assert set(medians) == set("abcd") and all(ms >= 0 for ms in medians.values())
    warmup, rounds = seen[:4], [seen[4 + 4 * i : 8 + 4 * i] for i in range(20)]
    assert warmup == list("abcd") and len(seen) == 4 + 4 * 20
    assert all(sorted(turn) == list("abcd") for turn in rounds)  # one of each per round
    assert len({tuple(turn) for turn in rounds}) > 5  # not always the same order
    assert {turn[0] for turn in rounds} == set("abcd")  # each call is sometimes first
