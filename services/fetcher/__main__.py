"""``python -m services.fetcher``: run the fetcher service on its own."""

from __future__ import annotations

import uvicorn

from services.fetcher.main import create_app
from services.fetcher.settings import FetcherSettings
from shared.hardening import harden_process


def main() -> None:
    settings = FetcherSettings()
    harden_process(settings.data_dir)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
