"""order intake: channel rules, what they did to each order, holds and the events they keep back

Revision ID: 0003
"""

from libs.database.migrations import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE channel_rules (
            rule_id text PRIMARY KEY,
            spec jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        -- what the rules did to an order (only orders some rule matched)
        CREATE TABLE order_rules (
            order_id text PRIMARY KEY REFERENCES orders(order_id),
            effects jsonb NOT NULL,
            tags text[] NOT NULL DEFAULT '{}'
        );
        -- an order held at intake: nothing is announced to allocation until it is released
        CREATE TABLE order_holds (
            order_id text PRIMARY KEY REFERENCES orders(order_id),
            reason text NOT NULL,
            held_by text NOT NULL,
            held_at timestamptz NOT NULL DEFAULT now()
        );
        -- the events a hold keeps back (OrderPlaced first, then changes), published in id order on release
        CREATE TABLE held_messages (
            id bigserial PRIMARY KEY,
            order_id text NOT NULL REFERENCES orders(order_id),
            topic text NOT NULL,
            key text NOT NULL,
            value bytea NOT NULL
        );
        CREATE INDEX held_messages_order_idx ON held_messages (order_id, id);
        """
    )
