"""The internal API shapes in shared.contracts: limits both sides enforce alike."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.trainer.model_server import server
from shared.contracts import MAX_PREDICT_INPUTS, PredictRequest, PredictResponse


def test_the_model_server_keeps_the_contracts_input_limit() -> None:
    # the server runs without aidp's packages and keeps a copy of the limit
    assert server.MAX_INPUTS == MAX_PREDICT_INPUTS


def test_predict_request_bounds_and_strictness() -> None:
    assert PredictRequest(inputs=["x"] * MAX_PREDICT_INPUTS).inputs[-1] == "x"
    bads: list[dict[str, object]] = [
        {"inputs": []},
        {"inputs": ["x"] * (MAX_PREDICT_INPUTS + 1)},
        {"inputs": ["x"], "extra": 1},
    ]
    for bad in bads:
        with pytest.raises(ValidationError):
            PredictRequest.model_validate(bad)
    assert PredictResponse.model_validate({"outputs": [1], "note": "kept out"}).outputs == [1]
