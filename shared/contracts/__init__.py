"""Typed shapes of the internal APIs, declared once and used by the caller and the callee.

A request or answer that crosses a service boundary is declared here, so a limit or a field
cannot drift between the side that sends it and the side that checks it (the gateway once
accepted 1,024 predict inputs that the trainer then refused past 256).
"""

from shared.contracts.predict import MAX_PREDICT_INPUTS, PredictRequest, PredictResponse

__all__ = ["MAX_PREDICT_INPUTS", "PredictRequest", "PredictResponse"]
