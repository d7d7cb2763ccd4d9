"""The PostgreSQL schema of order intake. Its tables are defined by the Alembic migrations in
migrations/versions; the use cases address them in SQL under this schema."""

SCHEMA = "order_intake"
