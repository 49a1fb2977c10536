"""``python -m services.trainer``: run the trainer service on its own."""

from __future__ import annotations

import uvicorn

from services.trainer.main import create_app
from services.trainer.settings import TrainerSettings
from shared.hardening import harden_process


def main() -> None:
    settings = TrainerSettings()
    harden_process(settings.data_dir)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
