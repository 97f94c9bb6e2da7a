"""Atomic writes: the old content or the new, never a mix, and no debris when a write fails."""

import os

import pytest

from model.durable_files import fsync_folder, write_atomically


def test_a_write_replaces_the_whole_file(tmp_path):
    path = tmp_path / "state.json"
    write_atomically(path, b"first, and longer")
    write_atomically(path, b"second")
    assert path.read_bytes() == b"second" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_write_cut_short_leaves_the_old_content_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    write_atomically(path, b"old")

    def cut(source, target):
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", cut)
    with pytest.raises(OSError, match="power cut"):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_the_data_is_synced_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    write_atomically(tmp_path / "x", b"data")
    assert events == ["fsync", "replace"]
    events.clear()
    fsync_folder(tmp_path)
    assert events == ["fsync"]
