"""Typed shapes of the internal APIs, declared once and used by the caller and the callee.

A request or answer that crosses a service boundary is declared here, so a limit or a field
cannot drift between the side that sends it and the side that checks it (the gateway once
accepted 1,024 predict inputs that the trainer then refused past 256).

One module per callee: ``identity`` (auth), ``artifacts`` (the fetcher), ``deployments`` and
``predict`` (the trainer), ``cloud_access`` (the provisioner); ``answers`` reads an answer
through its model (one out of contract is a 502 naming the service).
"""

from shared.contracts.predict import MAX_PREDICT_INPUTS, PredictRequest, PredictResponse

__all__ = ["MAX_PREDICT_INPUTS", "PredictRequest", "PredictResponse"]
