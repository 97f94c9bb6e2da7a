"""Loading transformers checkpoints without their load reports on the console."""

from __future__ import annotations

from pathlib import Path

from transformers.utils import logging as hf_logging


def load_quietly(model_class, folder: Path, **kwargs):
    """`model_class.from_pretrained(folder)`, keeping transformers' notes on unused heads out of the log."""
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return model_class.from_pretrained(folder, **kwargs)
    finally:
        hf_logging.set_verbosity(previous)
