import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.feature_bank import blank_inputs, fill_blanks
from model.config import LearnerConfig
from model.continual import ContinualModel


def test_blank_text_is_the_encoding_of_the_empty_input(tiny_backbone):
    model = ContinualModel(tiny_backbone, LearnerConfig())
    blank = blank_inputs(model, 32)
    text = tiny_backbone.text
    cls, sep = text.text_preprocessor.tokenizer.cls_token_id, text.text_preprocessor.tokenizer.sep_token_id
    assert blank.has_image.tolist() == [True] and blank.has_text.tolist() == [True]
    assert blank.input_ids.tolist() == [[cls, sep]] and blank.attention_mask.tolist() == [[1, 1]]
    with torch.no_grad():
        expected = F.normalize(text.encode(text.prompt_only_inputs(1)), dim=-1)  # (1, Dt)
    assert blank.q_text.abs().sum() > 0
    assert torch.allclose(blank.q_text, expected, atol=1e-6)
    white = model.encode([Image.new("RGB", (32, 32), (255, 255, 255))], [None])
    assert torch.allclose(blank.q_image, white.q_image, atol=1e-6)


def test_fill_blanks_gives_missing_rows_the_blank_queries(tiny_backbone):
    model = ContinualModel(tiny_backbone, LearnerConfig())
    blank = blank_inputs(model, 32)
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    batch = model.encode([image, None, image], ["a red dog", "a blue bus", None])
    filled = fill_blanks(batch, blank)
    assert filled.has_image.all() and filled.has_text.all()
    assert torch.equal(filled.q_image[1], blank.q_image[0]) and torch.equal(filled.q_text[2], blank.q_text[0])
    assert torch.equal(filled.q_text[:2], batch.q_text[:2]) and torch.equal(filled.q_image[0], batch.q_image[0])
    assert filled.attention_mask[2].tolist()[:3] == [1, 1, 0]
