"""The PostgreSQL schema of allocation; its tables' DDL is in migrations/versions, and their
columns as read and written are named in repository.py (row types and bulk upserts)."""

SCHEMA = "allocation"
