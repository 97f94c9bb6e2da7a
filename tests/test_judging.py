"""Versions judged as they will be served: with int8 replicas, the gate and the calibration measure the
int8 towers' answers, while training runs the fp32 torch towers."""

import json

import pytest
import torch

from model.backbone import Backbone
from model.continual import ContinualModel
from model.dataset import load_image, load_jsonl
from model.published import load_published
from model.state import latest_state
from serving.cli import main
from tests.learning_data import samples, write_jsonl_dataset
from tests.served_state import SMALL, learn_and_publish
from tests.updaters import FAST, feedback
from updater.config import UpdaterConfig
from updater.holdout import held_back, split_holdout
from updater.judging import judging_backbone
from updater.samples import encode_records
from updater.updater import Updater


@pytest.fixture(scope="module")
def int8_config(tiny_config):
    return tiny_config.model_copy(update={"precision": "int8"})


@pytest.fixture(scope="module")
def int8_backbone(int8_config, tiny_backbone):
    return judging_backbone(int8_config, tiny_backbone)


def calibration_on(backbone, state, encode, labels) -> dict[str, torch.Tensor]:
    """The calibration `state`'s model gets from the held-back samples `encode(model)` run by `backbone`."""
    model = ContinualModel.from_state(backbone, state)
    model.calibrate(encode(model), labels)
    return model.learner.calibration.export_tensors()


def assert_calibrated_by_int8(state, int8_backbone, torch_backbone, encode, labels):
    served = calibration_on(int8_backbone, state, encode, labels)
    trained = calibration_on(torch_backbone, state, encode, labels)
    for name, tensor in served.items():
        torch.testing.assert_close(state.tensors[name], tensor, rtol=1e-6, atol=0)
    assert any(not torch.equal(served[name], trained[name]) for name in served)  # int8 answers calibrate otherwise


def test_fp32_replicas_are_judged_by_the_trained_towers_int8_ones_by_int8_towers(
    tiny_config, tiny_backbone, int8_backbone
):
    assert judging_backbone(tiny_config, tiny_backbone) is tiny_backbone
    assert int8_backbone.text.precision == "int8" and int8_backbone.image.precision == "int8"
    assert int8_backbone.fingerprint == tiny_backbone.fingerprint


def test_a_model_run_by_other_towers_answers_as_a_replica_serving_it(tmp_path, tiny_backbone, int8_backbone):
    state = learn_and_publish(tiny_backbone, tmp_path, "first", ["dog", "bus"])
    model = ContinualModel.from_state(tiny_backbone, state)
    assert model.run_by(tiny_backbone) is model
    judged = model.run_by(int8_backbone)
    replica = ContinualModel.from_state(int8_backbone, state)
    images, texts, _ = samples(["dog", "bus"], per_class=3, missing={1: "image", 4: "text"})
    with torch.no_grad():
        logits = judged.forward(judged.encode(images, texts)).logits
        torch.testing.assert_close(logits, replica.forward(replica.encode(images, texts)).logits)
        assert not torch.equal(logits, model.forward(model.encode(images, texts)).logits)  # int8 answers differ
    assert judged.classes == model.classes and judged.version == model.version


def test_a_model_is_not_run_by_towers_it_was_not_trained_on(tiny_backbone, tiny_vit_backbone):
    with pytest.raises(ValueError, match="not the ones this model was trained on"):
        ContinualModel(tiny_backbone, SMALL).run_by(tiny_vit_backbone)


def test_the_updater_gates_and_calibrates_on_the_towers_replicas_serve(tmp_path, tiny_backbone, int8_backbone):
    settings = UpdaterConfig(min_samples_per_class=3, quiet_seconds=0, min_accuracy=0.0)
    updater = Updater(tmp_path, tiny_backbone, SMALL, FAST, settings, judging=int8_backbone)
    updater.accept(feedback(["dog", "bus"], 15))  # enough held back to rank each pattern
    outcome = updater.train(updater.due())
    assert outcome.published
    state = load_published(tmp_path)
    _, held = split_holdout(list(updater.log.read(0)), settings.holdout_fraction)
    labels = [record.label for record in held]

    def encode(model):
        return encode_records(model, updater.log, held)

    assert_calibrated_by_int8(state, int8_backbone, tiny_backbone, encode, labels)
    replica = ContinualModel.from_state(int8_backbone, state)
    predicted = [prediction.labels[0] for prediction in replica.predict(encode(replica), top_k=1)]
    right = sum(guess == label for guess, label in zip(predicted, labels, strict=True))
    assert outcome.accuracy == pytest.approx(100 * right / len(labels))


def test_train_with_precision_int8_calibrates_on_int8_answers(tmp_path, tiny_config, tiny_backbone, int8_backbone):
    data = write_jsonl_dataset(tmp_path, ["dog", "bus"], per_class=6)
    config = tmp_path / "config.json"
    learner = json.loads(SMALL.model_dump_json())
    config.write_text(json.dumps({"backbone": json.loads(tiny_config.model_dump_json()), "learner": learner}))
    args = ["train", "--data", str(data), "--state-dir", str(tmp_path / "state"), "--config", str(config)]
    assert main([*args, "--precision", "int8"]) == 0
    state = latest_state(tmp_path / "state")
    rows = load_jsonl(data)
    kept = [row for row, flag in zip(rows, held_back([row.label for row in rows], 0.2), strict=True) if flag]

    def encode(model):
        return model.encode([load_image(row) for row in kept], [row.text for row in kept])

    assert_calibrated_by_int8(state, int8_backbone, tiny_backbone, encode, [row.label for row in kept])


def test_bench_cmml_scores_the_answers_of_the_judging_towers(tmp_path, tiny_backbone, int8_backbone):
    from benchmarks.cmml import CmmlConfig, Split, run_method

    config = CmmlConfig(data=tmp_path / "unused.jsonl", trainer=FAST, learner=SMALL)
    tasks = [["dog", "bus"], ["tree", "cake"]]
    encoder = ContinualModel(tiny_backbone, SMALL)

    def split(per_class, missing):
        images, texts, labels = samples(sum(tasks, []), per_class=per_class, missing=missing)
        return Split(encoder.encode(images, texts), labels)

    train, held, test = split(5, {2: "image", 8: "text"}), split(2, {}), split(3, {1: "image", 4: "text"})

    class CountedTower:
        """`tower`, counting the rows it encodes."""

        def __init__(self, tower):
            self.tower, self.rows = tower, 0

        def __getattr__(self, name):
            return getattr(self.tower, name)

        def encode(self, inputs, prompts=None):
            self.rows += len(inputs[self.tower.input_names[0]])
            return self.tower.encode(inputs, prompts)

    counted = CountedTower(int8_backbone.text)
    judge = Backbone(int8_backbone.image, counted, int8_backbone.fingerprint)

    def run(judge):
        result = run_method("first_task", SMALL, tiny_backbone, judge, config, tasks, train, held, test, seed=0)
        return {name: value for name, value in result.items() if name not in ("train_seconds", "latency_ms")}

    by_torch = run(tiny_backbone)
    assert run(tiny_backbone) == by_torch and counted.rows == 0  # the same towers answer the same
    by_int8 = run(judge)
    # each stage's prompted text passes over the held-back and test rows, and the final timing ones
    assert counted.rows > 2 * len(test.labels)
    assert len(by_int8["correct"]) == len(by_torch["correct"]) == 12
