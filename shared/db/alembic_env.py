"""The body of every chain's ``env.py``: online migrations on the passed connection.

A chain's ``env.py`` is just ``from shared.db.alembic_env import run; run()``. The
connection and version table come from :func:`shared.db.migrate.upgrade`; for
``alembic revision --autogenerate`` set ``AIDP_DATABASE_URL`` and pass ``-x metadata=``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine


def run() -> None:
    config = context.config
    version_table = config.attributes.get("version_table", "alembic_version")
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("AIDP_DATABASE_URL", "sqlite://")
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()
