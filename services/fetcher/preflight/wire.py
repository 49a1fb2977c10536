"""The inputs on the child's stdin: JSON with every byte string in base64."""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = ["decode", "encode"]


def encode(inputs: dict[str, Any]) -> bytes:
    """:func:`~.inputs.collect_inputs`'s result as JSON bytes."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    doc = {
        "model": {k: b64(v) for k, v in inputs["model"].items()},
        "data": [
            {
                **{k: v for k, v in e.items() if k not in ("lines", "data")},
                **({"lines": [b64(x) for x in e["lines"]]} if "lines" in e else {}),
                **({"data": b64(e["data"])} if "data" in e else {}),
            }
            for e in inputs["data"]
        ],
    }
    return json.dumps(doc).encode()


def decode(raw: bytes) -> dict[str, Any]:
    """The inputs back from :func:`encode`'s bytes."""
    doc = json.loads(raw)
    model = {k: base64.b64decode(v) for k, v in doc["model"].items()}
    data = []
    for e in doc["data"]:
        if "lines" in e:
            e["lines"] = [base64.b64decode(x) for x in e["lines"]]
        if "data" in e:
            e["data"] = base64.b64decode(e["data"])
        data.append(e)
    return {"model": model, "data": data}
