from shared.db.alembic_env import run

run()
