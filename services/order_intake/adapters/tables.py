"""Tables of order intake (PostgreSQL schema ``order_intake``)."""

from sqlalchemy import MetaData

from libs.messaging import inbox_table, outbox_table

SCHEMA = "order_intake"
metadata = MetaData()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
