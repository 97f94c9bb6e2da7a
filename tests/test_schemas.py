"""The HTTP bodies: what a request may hold, and what the OpenAPI document tells clients."""

import pytest
from pydantic import ValidationError

from serving.schemas import PredictRequest, PredictResponse


def test_a_request_refuses_unknown_fields_and_a_top_k_below_one():
    assert PredictRequest(text="a dog").top_k == 5
    with pytest.raises(ValidationError, match="picture"):
        PredictRequest.model_validate({"text": "a dog", "picture": "..."})
    with pytest.raises(ValidationError, match="top_k"):
        PredictRequest(text="a dog", top_k=0)


def test_an_answer_documents_its_score_and_known_fields():
    properties = PredictResponse.model_json_schema()["properties"]
    assert "calibrated probability" in properties["score"]["description"]
    assert "farther from every learned class" in properties["known"]["description"]
    assert properties["missing"]["items"]["enum"] == ["image", "text"]
