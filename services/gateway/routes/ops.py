"""``/metrics``: Prometheus text of this gateway process."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.gateway.deps import GatewayDep
from services.gateway.metrics import CONTENT_TYPE_LATEST

__all__ = ["router"]

router = APIRouter(tags=["ops"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)
