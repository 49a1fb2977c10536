"""Prediction: ``POST /api/deployments/{id}/predict`` (public) and the trainer's
``POST /internal/deployments/{id}/predict`` take and answer the same shapes.

The model server (``services/trainer/model_server/server.py``) runs in the sandbox on the
environment's interpreter, without aidp's packages; it keeps its own copy of the limit,
which a unit test holds equal to :data:`MAX_PREDICT_INPUTS`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MAX_PREDICT_INPUTS", "PredictRequest", "PredictResponse"]

#: inputs per request: the model server's batch bound
MAX_PREDICT_INPUTS = 256


class PredictRequest(BaseModel):
    """The model's inputs (strings for text tasks, base64 or URLs for images)."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(min_length=1, max_length=MAX_PREDICT_INPUTS)


class PredictResponse(BaseModel):
    """One output per input, in order."""

    model_config = ConfigDict(extra="ignore")

    outputs: list[Any]
