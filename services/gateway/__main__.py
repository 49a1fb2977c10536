"""``python -m services.gateway``: run the gateway service on its own."""

from __future__ import annotations

import uvicorn

from services.gateway.main import create_app
from services.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
