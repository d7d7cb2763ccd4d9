"""Tables of fulfillment (PostgreSQL schema ``fulfillment``); the DDL is in migrations/versions."""

from sqlalchemy import MetaData

from libs.messaging import inbox_table, outbox_table

SCHEMA = "fulfillment"
metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
