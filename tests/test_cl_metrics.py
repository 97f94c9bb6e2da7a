import math

import pytest
from PIL import Image

from benchmarks.cl_metrics import (
    accuracy,
    average_performance,
    by_missing_accuracy,
    calibration_floor,
    expected_calibration_error,
    forgetting,
    mean_std,
    paired_difference,
    pooled_calibration,
    seen_task_means,
    summarise_runs,
    unknown_auroc,
)
from benchmarks.cmml_plot import DPI, PANEL_HEIGHT_INCHES, PANEL_WIDTH_INCHES, plot_results
from model.modality import Modality

# Row t: accuracy on tasks 0..t after learning task t. Task 0 improves after task 1 (92 > 90), so
# forgetting measured from the diagonal (27.5) differs from forgetting measured from the best (28.5).
MATRIX = [[90.0], [92.0, 80.0], [60.0, 55.0, 85.0]]
OTHER_MATRIX = [[80.0], [70.0, 70.0], [50.0, 40.0, 75.0]]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_accuracy_in_percent():
    assert accuracy(["a", "b", "c", "a"], ["a", "b", "a", "b"]) == 50.0
    assert accuracy(["a", "b", "c"], ["a", "b", "c"]) == 100.0
    assert accuracy(["x"], ["y"]) == 0.0
    assert math.isnan(accuracy([], []))
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        accuracy(["a", "b"], ["a"])


def test_average_performance_is_the_last_row_mean():
    assert average_performance(MATRIX) == pytest.approx(200.0 / 3)
    assert average_performance(OTHER_MATRIX) == 55.0
    assert average_performance([[42.0]]) == 42.0


def test_forgetting_from_the_diagonal():
    assert forgetting(MATRIX) == 27.5  # ((90 - 60) + (80 - 55)) / 2
    assert forgetting(OTHER_MATRIX) == 30.0  # ((80 - 50) + (70 - 40)) / 2
    assert forgetting([[42.0]]) == 0.0
    assert forgetting([[50.0], [60.0, 70.0]]) == -10.0  # backward transfer is negative forgetting


def test_seen_task_means_per_row():
    assert seen_task_means(MATRIX) == pytest.approx([90.0, 86.0, 200.0 / 3])


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [[1.0], [2.0]], [[1.0], [2.0, 3.0], [4.0, 5.0]]])
def test_matrix_shape_is_checked(bad):
    with pytest.raises(ValueError, match="accuracy matrix"):
        average_performance(bad)
    with pytest.raises(ValueError, match="accuracy matrix"):
        forgetting(bad)


def test_mean_std_is_population_std():
    assert mean_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == (5.0, 2.0)
    assert mean_std([3.0]) == (3.0, 0.0)
    assert mean_std([1.0, 2.0]) == (1.5, 0.5)
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])


def test_by_missing_accuracy_splits_by_pattern():
    both, image_only, text_only = Modality.BOTH, Modality.IMAGE, Modality.TEXT
    predictions = ["a", "b", "a", "a", "b", "b", "a"]
    labels = ["a", "a", "a", "a", "b", "a", "b"]
    presents = [both, both, both, both, image_only, image_only, text_only]
    result = by_missing_accuracy(predictions, labels, presents)
    assert list(result) == ["complete", "image_missing", "text_missing", "missing"]
    assert result["complete"] == 75.0
    assert result["text_missing"] == 50.0  # present IMAGE: the text is missing
    assert result["image_missing"] == 0.0  # present TEXT: the image is missing
    assert result["missing"] == pytest.approx(100.0 / 3)  # 1 right of 3 missing rows, not (0 + 50) / 2


def test_by_missing_pools_missing_rows_by_count():
    # 1 image-missing row, right; 4 text-missing rows, 1 right; 2 complete rows, wrong (not pooled)
    predictions = ["a", "a", "b", "b", "b", "x", "x"]
    labels = ["a", "a", "a", "a", "a", "b", "b"]
    presents = [Modality.TEXT] + [Modality.IMAGE] * 4 + [Modality.BOTH] * 2
    result = by_missing_accuracy(predictions, labels, presents)
    assert result["image_missing"] == 100.0 and result["text_missing"] == 25.0
    assert result["missing"] == 40.0  # 2 of 5 rows; the mean of the two patterns would say 62.5
    assert result["complete"] == 0.0


def test_by_missing_accuracy_nan_where_none_and_refusals():
    result = by_missing_accuracy(["a"], ["a"], [Modality.BOTH])
    assert result["complete"] == 100.0
    assert math.isnan(result["image_missing"]) and math.isnan(result["text_missing"])
    assert math.isnan(result["missing"])
    assert by_missing_accuracy(["a", "b"], ["a", "a"], [Modality.BOTH, Modality.TEXT])["missing"] == 0.0
    with pytest.raises(ValueError, match="presents\\[1\\] carries no modality"):
        by_missing_accuracy(["a", "b"], ["a", "b"], [Modality.BOTH, Modality.NONE])
    with pytest.raises(ValueError, match="2 predictions, 2 labels and 1 presence flags"):
        by_missing_accuracy(["a", "b"], ["a", "b"], [Modality.BOTH])


def two_runs() -> list[dict]:
    return [
        {
            "acc_matrix": MATRIX,
            "by_missing": {"complete": 80.0, "image_missing": math.nan, "text_missing": 60.0},
            "train_seconds": 10.0,
        },
        {
            "acc_matrix": OTHER_MATRIX,
            "by_missing": {"complete": 70.0, "image_missing": 50.0, "text_missing": math.nan},
            "train_seconds": 20.0,
        },
    ]


def test_summarise_runs():
    summary = summarise_runs(two_runs())
    assert set(summary) == {
        "ap",
        "ap_std",
        "forgetting",
        "forgetting_std",
        "last",
        "acc_matrix",
        "by_missing",
        "train_seconds",
        "runs",
        "by_missing_runs",
        "ap_runs",
        "forgetting_runs",
    }
    assert summary["ap"] == pytest.approx((200.0 / 3 + 55.0) / 2)
    assert summary["ap_std"] == pytest.approx((200.0 / 3 - 55.0) / 2)
    assert summary["forgetting"] == 28.75
    assert summary["forgetting_std"] == 1.25
    assert summary["last"] == 80.0
    assert summary["acc_matrix"] == [[85.0], [81.0, 75.0], [55.0, 47.5, 80.0]]
    assert summary["by_missing"] == {"complete": 75.0, "image_missing": 50.0, "text_missing": 60.0}
    assert summary["train_seconds"] == 15.0
    assert summary["runs"] == 2
    assert [run["complete"] for run in summary["by_missing_runs"]] == [80.0, 70.0]  # each seed's, kept
    assert summary["ap_runs"] == pytest.approx([200.0 / 3, 55.0]) and summary["forgetting_runs"] == [27.5, 30.0]


def test_summarise_one_run_has_no_spread():
    summary = summarise_runs(two_runs()[:1])
    assert summary["ap_std"] == 0.0 and summary["forgetting_std"] == 0.0
    assert summary["acc_matrix"] == MATRIX
    assert math.isnan(summary["by_missing"]["image_missing"])


def test_paired_difference_is_taken_seed_by_seed():
    difference = paired_difference([70.0, 74.0, 71.0], [66.0, 73.0, 72.0])  # differences 4, 1, -1
    assert difference["mean"] == pytest.approx(4 / 3)
    squares = (4 - 4 / 3) ** 2 + (1 - 4 / 3) ** 2 + (-1 - 4 / 3) ** 2
    assert difference["std"] == pytest.approx(math.sqrt(squares / 2))  # ddof=1
    assert difference["stderr"] == pytest.approx(difference["std"] / math.sqrt(3))
    assert difference["ahead"] == 2 and difference["seeds"] == 3
    assert paired_difference([5.0], [2.0]) == {"mean": 3.0, "std": 0.0, "stderr": 0.0, "ahead": 1, "seeds": 1}
    with pytest.raises(ValueError, match="as many runs on each side"):
        paired_difference([1.0, 2.0], [1.0])


def test_summarise_runs_refusals():
    with pytest.raises(ValueError, match="at least one run"):
        summarise_runs([])
    with pytest.raises(ValueError, match="run 0 lacks \\['train_seconds'\\]"):
        summarise_runs([{"acc_matrix": MATRIX, "by_missing": {}}])
    runs = two_runs()
    runs[1]["acc_matrix"] = [[1.0], [2.0, 3.0]]
    with pytest.raises(ValueError, match="different task counts cannot be averaged: \\[2, 3\\]"):
        summarise_runs(runs)


def test_plot_results_writes_a_png(tmp_path):
    summary = summarise_runs(two_runs())
    results = {"methods": {"rebq": summary, "baseline": summarise_runs(two_runs()[1:])}}
    path = tmp_path / "plots" / "cmml.png"
    plot_results(results, path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(path) as image:
        assert image.format == "PNG"
        panels = len(results["methods"]) + 1
        assert image.size == (round(PANEL_WIDTH_INCHES * panels * DPI), round(PANEL_HEIGHT_INCHES * DPI))


def test_plot_results_refuses_no_methods(tmp_path):
    with pytest.raises(ValueError, match="no method to plot"):
        plot_results({"methods": {}}, tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_expected_calibration_error_weighs_each_bins_gap_by_its_rows():
    # bin [14/15, 1]: 0.95 and 0.94, one right (accuracy 0.5, confidence 0.945); bin [3/15, 4/15): 0.25, wrong
    confidence, correct = [0.95, 0.94, 0.25], [True, False, False]
    expected = 100 * (2 / 3 * abs(0.5 - 0.945) + 1 / 3 * abs(0.0 - 0.25))
    assert expected_calibration_error(confidence, correct) == pytest.approx(expected)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)  # a score of 1 has a bin
    assert expected_calibration_error([0.5] * 4, [True, False] * 2) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="as many confidences as outcomes"):
        expected_calibration_error([0.5], [])


def test_unknown_auroc_counts_unknown_rows_that_outscore_known_ones():
    assert unknown_auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert unknown_auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert unknown_auroc([0.1, 0.5], [0.3, 0.5]) == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    with pytest.raises(ValueError, match="at least one known and one unknown"):
        unknown_auroc([], [0.3])


def test_the_calibration_floor_is_what_binning_noise_alone_gives():
    few, many = [0.7] * 50, [0.7] * 5000  # a calibrated predictor: 70 % right at confidence 0.7
    assert calibration_floor(many) < 1.0 < calibration_floor(few) < 15.0
    assert calibration_floor([1.0] * 20) == 0.0  # always right at confidence 1: no noise at all


def test_calibration_is_measured_over_every_runs_rows_pooled():
    runs = [
        {"confidence": [0.9, 0.9], "confidence_uncalibrated": [1.0, 1.0], "correct": [True, False]},
        {"confidence": [0.9, 0.9], "confidence_uncalibrated": [1.0, 1.0], "correct": [True, True]},
    ]
    pooled = pooled_calibration(runs)
    assert pooled["ece"] == pytest.approx(100 * abs(0.75 - 0.9))  # not the mean of the runs' 40 and 10
    assert pooled["ece_uncalibrated"] == pytest.approx(25.0)
    assert 0 < pooled["ece_floor"] < 100
