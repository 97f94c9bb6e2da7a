import json
import logging
import signal
import subprocess
import sys
import time

from tests.images import drawn_image, image_bytes
from updater.feedback_log import FeedbackLog, NewFeedback

PNG = image_bytes(drawn_image("disk", 20))


def sample(label: str, text: str | None = "a thing", picture: bytes | None = None) -> NewFeedback:
    return NewFeedback(label=label, task=None, text=text, image_bytes=picture)


def test_append_and_read_back(tmp_path):
    log = FeedbackLog(tmp_path)
    first = log.append([sample("dog", picture=PNG), sample("bus", text=None, picture=PNG)])
    second = log.append([sample("cat")])
    assert [r.offset for r in first + second] == [0, 1, 2] and log.end == 3
    again = list(FeedbackLog(tmp_path).read())
    expected = [(0, "dog", "a thing"), (1, "bus", None), (2, "cat", "a thing")]
    assert [(r.offset, r.label, r.text) for r in again] == expected
    assert again[0].image == again[1].image and len(list((tmp_path / "images").iterdir())) == 1
    assert log.image_path(again[0]).read_bytes() == PNG and again[2].image is None
    assert [r.label for r in log.read(1)] == ["bus", "cat"]
    assert [r.label for r in log.records({0, 2})] == ["dog", "cat"]


def test_an_unfinished_append_is_cut_off(tmp_path):
    log = FeedbackLog(tmp_path)
    log.append([sample("dog"), sample("bus")])
    with open(log.path, "ab") as handle:
        handle.write(b'{"offset": 2, "label": "ca')
    reopened = FeedbackLog(tmp_path)
    assert reopened.end == 2 and [r.label for r in reopened.read()] == ["dog", "bus"]
    assert reopened.append([sample("cat")])[0].offset == 2
    assert [r.label for r in FeedbackLog(tmp_path).read()] == ["dog", "bus", "cat"]


def test_committed_offset_round_trip(tmp_path):
    log = FeedbackLog(tmp_path)
    assert log.committed() == 0
    log.commit(7)
    assert FeedbackLog(tmp_path).committed() == 7


def test_reading_from_an_offset_reads_nothing_before_it(tmp_path, caplog):
    log = FeedbackLog(tmp_path)
    log.append([sample("dog"), sample("bus"), sample("cat")])
    damaged = log.path.read_bytes().replace(b'"label": "dog"', b'"label": "do\x00', 1)
    log.path.write_bytes(damaged)  # record 0 no longer parses; the lines keep their lengths
    reopened = FeedbackLog(tmp_path)
    reopened.append([sample("hen"), sample("owl")])
    with caplog.at_level(logging.ERROR):
        assert [(r.offset, r.label) for r in reopened.read(3)] == [(3, "hen"), (4, "owl")]
        assert [r.label for r in reopened.records([4, 1, 9])] == ["bus", "owl"]
        assert list(reopened.read(5)) == []
    assert caplog.text == ""  # record 0 was never read
    with caplog.at_level(logging.ERROR):
        assert [r.offset for r in reopened.read()] == [1, 2, 3, 4]  # the damaged one passed over, loudly
    assert "record 0 is unreadable and passed over" in caplog.text


def test_a_damaged_committed_offset_is_set_aside_and_read_as_zero(tmp_path, caplog):
    FeedbackLog(tmp_path).commit(7)
    (tmp_path / "committed.json").write_bytes(b'{"offset": 7')
    with caplog.at_level(logging.ERROR):
        log = FeedbackLog(tmp_path)
    assert log.committed() == 0 and "committed.json is unreadable" in caplog.text
    assert (tmp_path / "committed.json.unreadable").read_bytes() == b'{"offset": 7'
    log.commit(3)
    assert FeedbackLog(tmp_path).committed() == 3


WRITER = """
import sys
from updater.feedback_log import FeedbackLog, NewFeedback
log = FeedbackLog(sys.argv[1])
i = 0
while True:
    batch = [NewFeedback(label=f"c{i}-{k}", task=None, text="t" * 200, image_bytes=None) for k in range(5)]
    records = log.append(batch)
    sys.stdout.write(f"{records[-1].offset}\\n")
    sys.stdout.flush()
    i += 1
"""


def test_every_acknowledged_sample_survives_a_kill(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    acknowledged, deadline = -1, time.monotonic() + 60
    while acknowledged < 200 and time.monotonic() < deadline:
        acknowledged = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    log = FeedbackLog(tmp_path)
    assert acknowledged >= 200 and log.end >= acknowledged + 1
    records = list(log.read())
    assert [r.offset for r in records] == list(range(log.end))
    assert records[acknowledged].label.endswith("-4")  # the last sample of the last acknowledged request
    assert all(json.loads(line) for line in log.path.read_text().splitlines())
