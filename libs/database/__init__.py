"""PostgreSQL access shared by the services: engine factory and per-service schema migrations."""

from libs.database.engine import create_engine, database_url_from_env, ping
from libs.database.migrations import upgrade_schema

__all__ = ["create_engine", "database_url_from_env", "ping", "upgrade_schema"]
