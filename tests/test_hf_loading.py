"""Loading a transformers checkpoint quietly leaves the library's verbosity as it found it."""

import pytest
from transformers.utils import logging as hf_logging

from model.hf_loading import load_quietly


class Checkpoint:
    seen: list[int] = []

    @classmethod
    def from_pretrained(cls, folder, **kwargs):
        cls.seen.append(hf_logging.get_verbosity())
        if kwargs.get("broken"):
            raise OSError(f"{folder}: no weights")
        return (folder, kwargs)


def test_the_load_runs_at_error_level_and_the_verbosity_comes_back(tmp_path):
    hf_logging.set_verbosity_info()
    try:
        assert load_quietly(Checkpoint, tmp_path, revision="x") == (tmp_path, {"revision": "x"})
        assert Checkpoint.seen[-1] == hf_logging.ERROR and hf_logging.get_verbosity() == hf_logging.INFO
        with pytest.raises(OSError, match="no weights"):
            load_quietly(Checkpoint, tmp_path, broken=True)
        assert hf_logging.get_verbosity() == hf_logging.INFO
    finally:
        hf_logging.set_verbosity_warning()
