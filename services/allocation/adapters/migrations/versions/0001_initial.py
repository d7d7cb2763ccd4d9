"""allocation: locations, positions, sku locks, orders, lines, allocations, policies, inbox, outbox

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
        CREATE TABLE locations (
            location_id text PRIMARY KEY,
            name text NOT NULL,
            kind text NOT NULL,
            country text NOT NULL,
            lat double precision,
            lon double precision,
            active boolean NOT NULL,
            priority int NOT NULL,
            ships_to text[] NOT NULL,
            channels text[],
            pickup boolean NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE skus (
            sku text PRIMARY KEY,
            availability_dirty boolean NOT NULL DEFAULT false
        );
        CREATE INDEX skus_dirty_idx ON skus (sku) WHERE availability_dirty;
        CREATE TABLE positions (
            sku text NOT NULL,
            location_id text NOT NULL,
            bin text NOT NULL,
            lot text NOT NULL,
            received_at timestamptz,
            expires_at timestamptz,
            sellable boolean NOT NULL,
            on_hand int NOT NULL,
            reserved int NOT NULL,
            seq bigint NOT NULL,
            PRIMARY KEY (sku, location_id, bin, lot)
        );
        CREATE INDEX positions_location_idx ON positions (location_id);
        CREATE TABLE orders (
            order_id text PRIMARY KEY,
            channel text NOT NULL,
            placed_at timestamptz NOT NULL,
            priority int NOT NULL,
            ship_complete boolean NOT NULL,
            pickup_location_id text,
            country text NOT NULL,
            lat double precision,
            lon double precision,
            version int NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE order_lines (
            order_id text NOT NULL,
            line_id text NOT NULL,
            sku text NOT NULL,
            qty int NOT NULL,
            allocated int NOT NULL,
            backordered int NOT NULL,
            packed int NOT NULL,
            shipped int NOT NULL,
            cancelled int NOT NULL,
            on_hold boolean NOT NULL,
            backorder_reason text,
            priority int NOT NULL,
            placed_at timestamptz NOT NULL,
            PRIMARY KEY (order_id, line_id),
            CHECK (allocated + backordered + packed + shipped + cancelled = qty)
        );
        CREATE INDEX order_lines_queue_idx ON order_lines (sku, priority DESC, placed_at, order_id, line_id)
            WHERE backordered > 0 AND NOT on_hold;
        CREATE INDEX order_lines_backordered_idx ON order_lines (placed_at) WHERE backordered > 0;
        CREATE TABLE allocations (
            allocation_id bigserial PRIMARY KEY,
            order_id text NOT NULL,
            line_id text NOT NULL,
            sku text NOT NULL,
            location_id text NOT NULL,
            bin text NOT NULL,
            lot text NOT NULL,
            qty int NOT NULL CHECK (qty > 0),
            status text NOT NULL,
            shipment_id text,
            rule text NOT NULL,
            manual boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX allocations_order_idx ON allocations (order_id);
        CREATE INDEX allocations_live_position_idx ON allocations (sku, location_id, bin, lot)
            WHERE status = 'allocated';
        CREATE INDEX allocations_live_location_idx ON allocations (location_id) WHERE status = 'allocated';
        CREATE TABLE policies (
            channel text PRIMARY KEY,
            document jsonb NOT NULL,
            version int NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
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
