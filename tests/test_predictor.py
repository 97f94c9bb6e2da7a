import shutil

import pytest

from model.backbone import load_backbone
from model.continual import ContinualModel
from model.published import POINTER_FILE, load_published, publish
from model.state import TENSORS_FILE, version_folder
from serving.decode import DecodedSample
from serving.predictor import NoModelError, Predictor
from tests.images import drawn_image
from tests.served_state import learn_and_publish, only_text_only_rows_known

DOG, BUS = drawn_image("disk", 56, (200, 30, 30)), drawn_image("stripes", 56, (30, 30, 200))


@pytest.fixture(scope="module")
def onnx_backbone(tiny_config):
    return load_backbone(tiny_config, runtime="onnx")


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, tiny_backbone):
    """v1 learned dog/bus, v2 added tree/cake; kept pristine, copied by each test that changes it."""
    folder = tmp_path_factory.mktemp("states")
    learn_and_publish(tiny_backbone, folder, "first", ["dog", "bus"])
    learn_and_publish(tiny_backbone, folder, "second", ["tree", "cake"])
    return folder


@pytest.fixture
def state_dir(tmp_path, two_versions):
    return shutil.copytree(two_versions, tmp_path / "state")


MIXED = [
    DecodedSample(image=DOG, text="a red dog", top_k=2),
    DecodedSample(image=None, text="a blue bus", top_k=3),
    DecodedSample(image=BUS, text=None, top_k=1),
]


def test_serves_the_published_version_and_names_it(onnx_backbone, state_dir):
    predictor = Predictor(onnx_backbone, state_dir)
    assert predictor.refresh() and predictor.version == 2
    answers = predictor.predict_batch(MIXED)
    assert [answer.model_version for answer in answers] == [2, 2, 2]
    assert [answer.missing for answer in answers] == [[], ["image"], ["text"]]
    assert [answer.reconstructed for answer in answers] == [False, True, True]
    assert [len(answer.top_k) for answer in answers] == [2, 3, 1]
    for answer in answers:
        assert answer.label == answer.top_k[0].label and answer.score == answer.top_k[0].score
        assert answer.label in {"dog", "bus", "tree", "cake"}
        scores = [entry.score for entry in answer.top_k]
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_a_batch_answers_as_each_sample_alone(onnx_backbone, state_dir):
    predictor = Predictor(onnx_backbone, state_dir)
    predictor.refresh()
    together = predictor.predict_batch(MIXED)
    alone = [predictor.predict_batch([sample])[0] for sample in MIXED]
    for batched, single in zip(together, alone, strict=True):
        assert [e.label for e in batched.top_k] == [e.label for e in single.top_k]
        assert batched.score == pytest.approx(single.score, abs=1e-5)


def test_nothing_learned_is_refused(onnx_backbone, tmp_path):
    predictor = Predictor(onnx_backbone, tmp_path)
    assert not predictor.refresh() and predictor.version == 0
    with pytest.raises(NoModelError, match="no task has been learned"):
        predictor.predict_batch(MIXED[:1])
    assert predictor.model_info().version == 0 and predictor.model_info().tasks == []


def test_rollback_and_forward_swap_between_batches(onnx_backbone, state_dir):
    predictor = Predictor(onnx_backbone, state_dir)
    predictor.refresh()
    publish(state_dir, 1)
    assert predictor.predict_batch(MIXED[:1])[0].model_version == 2  # not installed until refresh
    assert predictor.refresh() and predictor.version == 1
    answer = predictor.predict_batch(MIXED[:1])[0]
    assert answer.model_version == 1 and answer.label in {"dog", "bus"}
    assert [task.name for task in predictor.model_info().tasks] == ["first"]
    publish(state_dir, 2)
    assert predictor.refresh() and predictor.predict_batch(MIXED[:1])[0].model_version == 2
    assert not predictor.refresh()  # nothing new


def test_a_batch_in_flight_keeps_its_version(onnx_backbone, state_dir, monkeypatch):
    """A swap that lands while a batch is being computed does not change that batch's answers."""
    predictor = Predictor(onnx_backbone, state_dir)
    predictor.refresh()
    publish(state_dir, 1)
    model = predictor.model
    original_encode = model.encode

    def encode_then_swap(images, texts):
        encoded = original_encode(images, texts)
        assert predictor.refresh()  # the swap happens mid-batch
        return encoded

    monkeypatch.setattr(model, "encode", encode_then_swap)
    answers = predictor.predict_batch(MIXED)
    assert {answer.model_version for answer in answers} == {2} and predictor.version == 1
    assert predictor.predict_batch(MIXED[:1])[0].model_version == 1


def test_a_corrupted_version_is_refused_and_the_old_one_kept(onnx_backbone, state_dir, caplog):
    publish(state_dir, 1)
    predictor = Predictor(onnx_backbone, state_dir)
    predictor.refresh()
    tensors = version_folder(state_dir, 2) / TENSORS_FILE
    tensors.write_bytes(tensors.read_bytes()[:100])
    (state_dir / POINTER_FILE).write_text('{"version": 2}')
    assert not predictor.refresh()
    assert predictor.version == 1 and "version 2 refused" in caplog.text
    assert predictor.predict_batch(MIXED[:1])[0].model_version == 1


def test_a_fresh_replica_falls_back_to_a_version_that_loads(onnx_backbone, state_dir):
    tensors = version_folder(state_dir, 2) / TENSORS_FILE
    tensors.write_bytes(b"truncated")
    predictor = Predictor(onnx_backbone, state_dir)
    assert predictor.refresh() and predictor.version == 1


def test_a_version_written_again_after_a_refusal_is_looked_at_afresh(onnx_backbone, state_dir, two_versions):
    publish(state_dir, 1)
    predictor = Predictor(onnx_backbone, state_dir)
    predictor.refresh()
    tensors = version_folder(state_dir, 2) / TENSORS_FILE
    good = tensors.read_bytes()
    tensors.write_bytes(good[:100])
    (state_dir / POINTER_FILE).write_text('{"version": 2}')
    assert not predictor.refresh() and not predictor.refresh()  # refused once, not re-read at every poll
    refused = [v.refused for v in predictor.versions()]
    assert refused == [None, "its files are missing, unreadable or corrupted"]
    shutil.rmtree(version_folder(state_dir, 2))
    shutil.copytree(version_folder(two_versions, 2), version_folder(state_dir, 2))  # the operator repairs it
    assert predictor.refresh() and predictor.version == 2
    assert [(v.served, v.refused) for v in predictor.versions()] == [(False, None), (True, None)]


def test_answers_say_whether_the_sample_is_near_a_learned_class(onnx_backbone, tiny_backbone, state_dir):
    predictor = Predictor(onnx_backbone, state_dir)
    predictor.refresh()
    assert all(answer.known for answer in predictor.predict_batch(MIXED))  # never calibrated: all known
    model = ContinualModel.from_state(tiny_backbone, load_published(state_dir))
    only_text_only_rows_known(model)
    model.save(state_dir)
    assert predictor.refresh() and predictor.version == 3
    assert [answer.known for answer in predictor.predict_batch(MIXED)] == [False, True, False]
