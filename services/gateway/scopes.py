"""Which token scope (:mod:`shared.scopes`) each gateway route needs: the one place.

Rule: reading (GET, WebSocket subscriptions) needs ``read``; changing projects, runs,
members, secrets and uploads needs ``run``; starting or stopping deployments ``deploy``;
calling an inference endpoint ``predict``; platform administration ``admin``. Routes that
take no bearer token (auth's public routes, which auth authorises itself; health; metrics;
docs) map to ``None``.

:func:`required_scope` is enforced by the ``CurrentUser`` dependency of every
authenticated route (``deps.py``) and by the WebSocket; a route missing from the table is
refused (fail closed), and ``tests/unit/gateway/test_scopes.py`` walks the app's routes
so that a new route without a mapping fails the build.
"""

from __future__ import annotations

from shared.errors import Forbidden
from shared.scopes import Scope

__all__ = ["ROUTE_SCOPES", "WEBSOCKET", "InsufficientScope", "required_scope"]

WEBSOCKET = "WEBSOCKET"  # the "method" of WebSocket routes in the table

_R, _RUN, _DEP, _PRED = Scope.READ, Scope.RUN, Scope.DEPLOY, Scope.PREDICT

#: (method, path template) -> scope needed (None: no bearer token taken).
ROUTE_SCOPES: dict[tuple[str, str], Scope | None] = {
    # auth's public routes, proxied verbatim: auth authorises them (API tokens included)
    ("GET", "/api/auth/{path}"): None,
    ("POST", "/api/auth/{path}"): None,
    ("PUT", "/api/auth/{path}"): None,
    ("PATCH", "/api/auth/{path}"): None,
    ("DELETE", "/api/auth/{path}"): None,
    # ops and docs
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    ("GET", "/api/openapi.json"): None,
    ("HEAD", "/api/openapi.json"): None,
    ("GET", "/api/docs"): None,
    ("GET", "/api/docs/init.js"): None,
    ("GET", "/api/docs/oauth2-redirect"): None,
    # secrets
    ("GET", "/api/secrets"): _R,
    ("PUT", "/api/secrets/{name}"): _RUN,
    ("DELETE", "/api/secrets/{name}"): _RUN,
    # projects and members
    ("GET", "/api/projects"): _R,
    ("POST", "/api/projects"): _RUN,
    ("GET", "/api/projects/{project_id}"): _R,
    ("PATCH", "/api/projects/{project_id}"): _RUN,
    ("DELETE", "/api/projects/{project_id}"): _RUN,
    ("GET", "/api/projects/{project_id}/members"): _R,
    ("POST", "/api/projects/{project_id}/members"): _RUN,
    ("DELETE", "/api/projects/{project_id}/members/{user_id}"): _RUN,
    ("GET", "/api/projects/{project_id}/invitations"): _R,
    ("DELETE", "/api/projects/{project_id}/invitations/{invitation_id}"): _RUN,
    ("GET", "/api/projects/{project_id}/audit"): _R,
    ("POST", "/api/projects/{project_id}/clone"): _RUN,
    ("POST", "/api/specs/validate"): _RUN,
    ("GET", "/api/runs/{run_id}/spec"): _R,
    # project webhooks (routes/webhooks.py; editors)
    ("POST", "/api/projects/{project_id}/webhooks"): _RUN,
    ("GET", "/api/projects/{project_id}/webhooks"): _R,
    ("DELETE", "/api/projects/{project_id}/webhooks/{webhook_id}"): _RUN,
    ("GET", "/api/projects/{project_id}/webhooks/{webhook_id}/deliveries"): _R,
    ("GET", "/api/invitations"): _R,
    ("POST", "/api/invitations/{invitation_id}/accept"): _RUN,
    ("POST", "/api/invitations/{invitation_id}/decline"): _RUN,
    # runs
    ("POST", "/api/projects/{project_id}/runs"): _RUN,
    ("GET", "/api/projects/{project_id}/runs"): _R,
    ("GET", "/api/runs/{run_id}"): _R,
    ("POST", "/api/runs/{run_id}/cancel"): _RUN,
    ("GET", "/api/runs/{run_id}/events"): _R,
    ("GET", "/api/runs/{run_id}/logs"): _R,
    ("GET", "/api/runs/{run_id}/environment"): _R,
    # artifacts
    ("GET", "/api/artifacts"): _R,
    ("POST", "/api/uploads"): _RUN,
    # models and deployments
    ("GET", "/api/projects/{project_id}/models"): _R,
    ("GET", "/api/models/{model_id}/download"): _R,
    ("POST", "/api/models/{model_id}/deploy"): _DEP,
    ("GET", "/api/deployments/{deployment_id}"): _R,
    ("DELETE", "/api/deployments/{deployment_id}"): _DEP,
    ("POST", "/api/deployments/{deployment_id}/predict"): _PRED,
    ("GET", "/api/deployments"): _R,
    ("PATCH", "/api/deployments/{deployment_id}"): _DEP,
    ("POST", "/api/deployments/{deployment_id}/stop"): _DEP,
    ("POST", "/api/deployments/{deployment_id}/start"): _DEP,
    ("POST", "/api/deployments/{deployment_id}/promote"): _DEP,
    ("GET", "/api/projects/{project_id}/endpoint"): _R,
    ("POST", "/api/projects/{project_id}/endpoint/predict"): _PRED,
    ("POST", "/api/projects/{project_id}/endpoint/rollback"): _DEP,
    # the OpenAI-compatible API of LLM deployments (routes/openai.py): all of it is predicting
    ("GET", "/api/deployments/{deployment_id}/v1/models"): _PRED,
    ("POST", "/api/deployments/{deployment_id}/v1/chat/completions"): _PRED,
    ("POST", "/api/deployments/{deployment_id}/v1/completions"): _PRED,
    # the status stream
    (WEBSOCKET, "/api/ws"): _R,
    # platform administration (routes/admin.py; admins only besides the scope)
    ("GET", "/api/admin/cloud-access"): Scope.ADMIN,
    ("PUT", "/api/admin/cloud-access"): Scope.ADMIN,
    ("GET", "/api/admin/cloud-access/changes"): Scope.ADMIN,
}


class InsufficientScope(Forbidden):
    """403 ``insufficient_scope``: the token lacks the scope the route needs."""

    code = "insufficient_scope"

    def __init__(self, needed: Scope) -> None:
        super().__init__(f"this token lacks the '{needed.value}' scope this route needs")
        self.needed = needed


class _Unmapped(Forbidden):
    code = "insufficient_scope"


def required_scope(method: str, path: str) -> Scope:
    """The scope an authenticated call of ``method path`` needs; refused if unmapped."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    scope = ROUTE_SCOPES.get((method, path))
    if scope is None:
        # an authenticated route absent from the table (or mapped public by mistake)
        raise _Unmapped(f"no token scope is mapped for {method} {path}")
    return scope
