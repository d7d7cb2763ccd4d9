"""Tables of inventory (PostgreSQL schema ``inventory``); the DDL is in migrations/versions."""

from sqlalchemy import MetaData

from libs.messaging import inbox_table, outbox_table

SCHEMA = "inventory"
metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
