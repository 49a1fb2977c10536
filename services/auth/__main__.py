"""``python -m services.auth``: run the auth service on its own.

``python -m services.auth rotate-key`` rotates the JWT signing key in Vault and exits
(tokens signed with the old key stay valid until they expire).
"""

from __future__ import annotations

import sys

import uvicorn

from services.auth.main import create_app
from services.auth.settings import AuthSettings
from shared.hardening import harden_process


def rotate_key(settings: AuthSettings) -> str:
    """Rotate the signing key using the service's own Vault and database settings."""
    from services.auth.context import build_context
    from services.auth.service import rotate_signing_key
    from shared.db import Database
    from shared.secrets import connect_vault

    db = Database(settings.resolved_database_url())
    try:
        store, _keys = connect_vault(settings)
        return rotate_signing_key(build_context(settings=settings, db=db, store=store))
    finally:
        db.dispose()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    settings = AuthSettings()
    if args == ["rotate-key"]:
        print(f"new signing key: {rotate_key(settings)}")
        return
    if args:
        print("usage: python -m services.auth [rotate-key]", file=sys.stderr)
        raise SystemExit(2)
    harden_process(settings.data_dir)
    # proxy_headers off: the client address is the gateway's X-Forwarded-For entry, read by
    # services.auth.deps (TRUST_FORWARDED_FOR), never rewritten by uvicorn.
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
