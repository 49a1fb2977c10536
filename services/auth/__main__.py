"""``python -m services.auth``: run the auth service on its own."""

from __future__ import annotations

import uvicorn

from services.auth.main import create_app
from services.auth.settings import AuthSettings


def main() -> None:
    settings = AuthSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
