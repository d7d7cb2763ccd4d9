"""Tables of allocation (PostgreSQL schema ``allocation``); DDL in migrations/versions."""

from sqlalchemy import MetaData

from libs.messaging import inbox_table, outbox_table

SCHEMA = "allocation"
metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
