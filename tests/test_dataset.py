import json
from pathlib import Path

import pytest
from PIL import Image

from model.dataset import (
    DatasetError,
    Sample,
    classes_in_order,
    load_image,
    load_jsonl,
    split_into_tasks,
)
from model.modality import Modality


def write_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")


def write_jsonl(path: Path, lines: list[object]) -> Path:
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    write_png(tmp_path / "images" / "red.png", (3, 2), (255, 0, 0))
    write_png(tmp_path / "images" / "blue.png", (4, 5), (0, 0, 255))
    return tmp_path


def test_load_jsonl_resolves_relative_images_and_ignores_extra_keys(data_dir):
    path = write_jsonl(
        data_dir / "split" / "train.jsonl",
        [
            {"id": "a", "image": "../images/red.png", "text": "a red thing", "label": "red", "subcategory": "x"},
            {"id": "b", "image": None, "text": "only words", "label": "blue", "task": "t1"},
            "",
            {"id": "c", "image": "../images/blue.png", "text": None, "label": "blue"},
            {"id": "d", "image": "../images/blue.png", "text": "", "label": "red"},
        ],
    )
    samples = load_jsonl(path)
    assert [sample.id for sample in samples] == ["a", "b", "c", "d"]
    assert samples[0].image_path == (data_dir / "images" / "red.png").resolve()
    assert samples[0].image_path.is_absolute()
    assert samples[0].text == "a red thing"
    assert samples[0].task is None
    assert samples[1].image_path is None
    assert samples[1].task == "t1"
    assert samples[3].text is None
    assert [sample.present for sample in samples] == [
        Modality.BOTH,
        Modality.TEXT,
        Modality.IMAGE,
        Modality.IMAGE,
    ]


def test_present_counts_empty_text_as_missing(tmp_path):
    sample = Sample(id="x", image_path=tmp_path / "x.png", text="", label="l")
    assert sample.present == Modality.IMAGE
    assert Sample(id="y", text="words", label="l").present == Modality.TEXT


def test_sample_is_strict_and_frozen():
    with pytest.raises(ValueError, match="extra"):
        Sample(id="x", text="t", label="l", colour="red")
    sample = Sample(id="x", text="t", label="l")
    with pytest.raises(ValueError, match="frozen"):
        sample.label = "other"


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"id": "z", "text": "t", "label": ', "invalid JSON"),
        ('["id", "z"]', "expected a JSON object"),
        ({"id": "z", "text": "t"}, "missing 'label'"),
        ({"id": "z", "text": "t", "label": ""}, "'label' must be a non-empty string"),
        ({"text": "t", "label": "l"}, "missing 'id'"),
        ({"id": 7, "text": "t", "label": "l"}, "'id' must be a string or null, got int"),
        ({"id": "z", "image": None, "text": None, "label": "l"}, "sample 'z' has neither image nor text"),
        ({"id": "z", "image": "", "text": "", "label": "l"}, "sample 'z' has neither image nor text"),
        (
            {"id": "z", "image": "images/absent.png", "text": "t", "label": "l"},
            "image file not found: .*absent.png",
        ),
        ({"id": "a", "text": "again", "label": "l"}, "duplicate id 'a' \\(first on line 1\\)"),
    ],
)
def test_load_jsonl_errors_name_file_and_line(data_dir, bad_line, message):
    good = [
        {"id": "a", "image": "images/red.png", "text": "t", "label": "red"},
        "",
        {"id": "b", "text": "u", "label": "red"},
    ]
    path = write_jsonl(data_dir / "bad.jsonl", [*good, bad_line])
    with pytest.raises(DatasetError, match=f"bad.jsonl:4: {message}"):
        load_jsonl(path)


def test_dataset_error_is_a_value_error():
    assert issubclass(DatasetError, ValueError)


def test_load_image_opens_and_loads(data_dir):
    path = write_jsonl(data_dir / "d.jsonl", [{"id": "a", "image": "images/blue.png", "text": None, "label": "b"}])
    image = load_image(load_jsonl(path)[0])
    assert image.size == (4, 5)
    assert image.getpixel((3, 4)) == (0, 0, 255)


def test_load_image_without_image_or_with_bad_bytes(tmp_path):
    with pytest.raises(DatasetError, match="sample 'x' has no image"):
        load_image(Sample(id="x", text="t", label="l"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    with pytest.raises(DatasetError, match="sample 'y': cannot read image .*broken.png"):
        load_image(Sample(id="y", image_path=broken, label="l"))


def test_classes_in_order_of_first_appearance():
    samples = [Sample(id=str(i), text="t", label=label) for i, label in enumerate("cabacd")]
    assert classes_in_order(samples) == ["c", "a", "b", "d"]
    assert classes_in_order([]) == []


@pytest.mark.parametrize(
    ("count", "tasks", "sizes"),
    [(11, 5, [3, 2, 2, 2, 2]), (10, 5, [2, 2, 2, 2, 2]), (7, 3, [3, 2, 2]), (5, 1, [5]), (4, 4, [1, 1, 1, 1])],
)
def test_split_into_tasks_sizes(count, tasks, sizes):
    classes = [f"c{i}" for i in range(count)]
    groups = split_into_tasks(classes, tasks)
    assert [len(group) for group in groups] == sizes
    assert [name for group in groups for name in group] == classes


def test_split_into_tasks_is_contiguous():
    assert split_into_tasks(["a", "b", "c", "d", "e"], 2) == [["a", "b", "c"], ["d", "e"]]


@pytest.mark.parametrize("tasks", [0, -1, 4])
def test_split_into_tasks_refuses_bad_counts(tasks):
    with pytest.raises(ValueError, match=f"tasks must be between 1 and the 3 classes, got {tasks}"):
        split_into_tasks(["a", "b", "c"], tasks)


def test_a_blank_text_in_a_data_set_is_read_as_none(data_dir):
    lines = [{"id": "a", "image": "images/red.png", "text": "   ", "label": "l"}]
    (sample,) = load_jsonl(write_jsonl(data_dir / "blank.jsonl", lines))
    assert sample.text is None and sample.present == Modality.IMAGE
