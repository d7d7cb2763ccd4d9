"""Run a service's Alembic migrations at start-up, in the service's own PostgreSQL schema.

Each service keeps its revisions in ``<service>/adapters/migrations/versions``. We drive Alembic
programmatically instead of shipping one ``env.py`` per service: the four would be identical.
Concurrent start-ups of several instances serialise on a PostgreSQL advisory lock.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine


def _alembic_config(versions_dir: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(versions_dir.parent))
    cfg.set_main_option("version_locations", str(versions_dir))
    return cfg


async def upgrade_schema(engine: AsyncEngine, *, schema: str, versions_dir: Path) -> None:
    """Create ``schema`` if needed and upgrade it to the newest revision."""
    lock_id = zlib.crc32(f"oms-migrate-{schema}".encode())
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
        try:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.commit()
            await conn.run_sync(_upgrade, schema, versions_dir)
            await conn.commit()
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
            await conn.commit()


def _upgrade(connection: Connection, schema: str, versions_dir: Path) -> None:
    cfg = _alembic_config(versions_dir)
    script = ScriptDirectory.from_config(cfg)

    def do_upgrade(revision, context):  # type: ignore[no-untyped-def]
        return script._upgrade_revs("head", revision)

    with EnvironmentContext(cfg, script, fn=do_upgrade) as env:
        env.configure(
            connection=connection,
            version_table_schema=schema,
            version_table="alembic_version",
        )
        connection.execute(text(f'SET search_path TO "{schema}"'))
        with env.begin_transaction():
            env.run_migrations()


def execute_script(sql: str) -> None:
    """Run a DDL script statement by statement inside a migration (asyncpg prepares each
    statement, so it refuses several in one call). Statements end with ';' at a line end."""
    from alembic import op

    for statement in sql.split(";\n"):
        if statement.strip():
            op.execute(statement)
