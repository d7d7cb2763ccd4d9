"""The PostgreSQL schema of allocation. Its tables are defined by the Alembic migrations in
migrations/versions; the use cases address them in SQL under this schema."""

SCHEMA = "allocation"
