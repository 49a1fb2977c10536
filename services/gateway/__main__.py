"""``python -m services.gateway``: run the gateway service on its own (HTTPS when
``AIDP_TLS_CERT``/``AIDP_TLS_KEY`` are set)."""

from __future__ import annotations

import uvicorn

from services.gateway.main import create_app
from services.gateway.settings import GatewaySettings
from shared.hardening import harden_process
from shared.service.gc_tuning import settle_heap


def main() -> None:
    settings = GatewaySettings()
    harden_process(settings.data_dir)
    tls = (
        {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
        if settings.tls_cert and settings.tls_key
        else {}
    )
    app = create_app(settings)
    settle_heap()  # GC pauses were the fan-out's latency tail (shared.service.gc_tuning)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=settings.forwarded_allow_ips is not None,
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
        ws_per_message_deflate=settings.ws_per_message_deflate,
        **tls,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
