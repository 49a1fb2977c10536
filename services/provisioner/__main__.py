"""``python -m services.provisioner``: run the provisioner service on its own."""

from __future__ import annotations

import uvicorn

from services.provisioner.main import create_app
from services.provisioner.settings import ProvisionerSettings
from shared.hardening import harden_process


def main() -> None:
    settings = ProvisionerSettings()
    harden_process(settings.data_dir)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
