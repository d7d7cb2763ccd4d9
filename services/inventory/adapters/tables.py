"""The PostgreSQL schema of inventory. Its tables are defined by the Alembic migrations in
migrations/versions; the use cases address them in SQL under this schema."""

SCHEMA = "inventory"
