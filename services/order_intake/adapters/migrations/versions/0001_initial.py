"""order intake: orders, lines, timeline, inbox, outbox

Revision ID: 0001
"""

from libs.database.migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE orders (
            order_id text PRIMARY KEY,
            channel text NOT NULL,
            external_id text NOT NULL,
            content_hash text NOT NULL,
            placed_at timestamptz NOT NULL,
            currency text NOT NULL,
            customer jsonb NOT NULL,
            ship_to jsonb NOT NULL,
            priority int NOT NULL,
            ship_complete boolean NOT NULL,
            pickup_location_id text,
            status text NOT NULL DEFAULT 'pending',
            allocation_version int NOT NULL DEFAULT 0,
            received_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (channel, external_id)
        );
        CREATE INDEX orders_status_idx ON orders (status, channel, received_at);
        CREATE TABLE order_lines (
            order_id text NOT NULL REFERENCES orders(order_id),
            line_id text NOT NULL,
            sku text NOT NULL,
            qty int NOT NULL CHECK (qty >= 0),
            unit_price numeric(18,4) NOT NULL,
            allocated int NOT NULL DEFAULT 0,
            backordered int NOT NULL DEFAULT 0,
            packed int NOT NULL DEFAULT 0,
            shipped int NOT NULL DEFAULT 0,
            cancelled int NOT NULL DEFAULT 0,
            returned int NOT NULL DEFAULT 0,
            on_hold boolean NOT NULL DEFAULT false,
            backorder_reason text,
            PRIMARY KEY (order_id, line_id)
        );
        CREATE TABLE timeline (
            id bigserial PRIMARY KEY,
            order_id text NOT NULL,
            at timestamptz NOT NULL,
            event_type text NOT NULL,
            source text NOT NULL,
            summary text NOT NULL
        );
        CREATE INDEX timeline_order_idx ON timeline (order_id, id);
        CREATE TABLE inbox (
            event_id uuid PRIMARY KEY,
            processed_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE outbox (
            id bigserial PRIMARY KEY,
            topic text NOT NULL,
            key text NOT NULL,
            value bytea NOT NULL,
            headers jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )
