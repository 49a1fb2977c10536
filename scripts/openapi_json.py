"""Write the public OpenAPI document (what the gateway serves at ``/api/openapi.json``).

The gateway's own routes merged with the auth service's public ``/api/auth/*`` routes,
built from the apps' code alone: nothing is started, no database or broker is needed.
``web/``'s ``npm run gen:api`` turns it into ``web/src/api-types.ts`` (openapi-typescript).

    python scripts/openapi_json.py [OUT]   # OUT defaults to standard output
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def public_document() -> dict[str, Any]:
    """The merged document, as the gateway serves it once the auth service has answered."""
    # the document is the code's, not this shell's: AIDP_* settings are left out
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("AIDP_")}
    try:
        return _build()
    finally:
        os.environ.update(saved)


def _build() -> dict[str, Any]:
    from services.auth.main import create_app as auth_app
    from services.auth.settings import AuthSettings
    from services.gateway.main import create_app as gateway_app
    from services.gateway.settings import GatewaySettings

    with tempfile.TemporaryDirectory(prefix="aidp-openapi-") as tmp:
        # settings of an unused local install: building the apps opens nothing
        data = {"data_dir": Path(tmp), "database_url": f"sqlite:///{tmp}/unused.db"}
        auth = auth_app(AuthSettings(**data))  # type: ignore[arg-type]
        gateway = gateway_app(GatewaySettings(**data))  # type: ignore[arg-type]
        gateway.state.auth_openapi = auth.openapi()
        return gateway.openapi()


def main(argv: list[str]) -> int:
    text = json.dumps(public_document(), indent=2, sort_keys=True) + "\n"
    if len(argv) > 1:
        out = Path(argv[1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
