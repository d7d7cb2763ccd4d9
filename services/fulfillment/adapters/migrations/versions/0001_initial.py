"""fulfillment: order lines, allocation mirror, shipments, serialized SKUs, returns, inbox, outbox

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
        CREATE TABLE order_lines (
            order_id text NOT NULL,
            line_id text NOT NULL,
            sku text NOT NULL,
            qty int NOT NULL,
            unit_price numeric(18,4) NOT NULL,
            currency text NOT NULL,
            ship_complete boolean NOT NULL,
            PRIMARY KEY (order_id, line_id)
        );
        CREATE TABLE allocation_snapshots (
            order_id text PRIMARY KEY,
            version int NOT NULL,
            lines jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE allocations (
            order_id text NOT NULL,
            allocation_id bigint NOT NULL,
            line_id text NOT NULL,
            sku text NOT NULL,
            location_id text NOT NULL,
            bin text NOT NULL,
            lot text NOT NULL,
            qty int NOT NULL,
            status text NOT NULL,
            shipment_id text,
            PRIMARY KEY (order_id, allocation_id)
        );
        CREATE INDEX allocations_pick_idx ON allocations (location_id, bin, sku) WHERE status = 'allocated';
        CREATE TABLE shipments (
            shipment_id text PRIMARY KEY,
            order_id text NOT NULL,
            status text NOT NULL CHECK (status IN ('pending', 'packed', 'rejected', 'shipped')),
            requested_line_ids text[],
            serials jsonb NOT NULL DEFAULT '{}',
            detail text,
            carrier text,
            tracking_number text,
            requested_at timestamptz NOT NULL DEFAULT now(),
            packed_at timestamptz,
            rejected_at timestamptz,
            shipped_at timestamptz
        );
        CREATE INDEX shipments_order_idx ON shipments (order_id);
        CREATE TABLE shipment_lines (
            shipment_id text NOT NULL REFERENCES shipments(shipment_id),
            allocation_id bigint NOT NULL,
            order_id text NOT NULL,
            line_id text NOT NULL,
            sku text NOT NULL,
            location_id text NOT NULL,
            bin text NOT NULL,
            lot text NOT NULL,
            qty int NOT NULL CHECK (qty > 0),
            serials jsonb NOT NULL DEFAULT '[]',
            PRIMARY KEY (shipment_id, allocation_id)
        );
        CREATE INDEX shipment_lines_order_idx ON shipment_lines (order_id, line_id);
        CREATE TABLE serialized_skus (
            sku text PRIMARY KEY,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE returns (
            return_id text PRIMARY KEY,
            order_id text NOT NULL,
            refund_total numeric(18,4) NOT NULL,
            currency text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX returns_order_idx ON returns (order_id);
        CREATE TABLE return_lines (
            return_id text NOT NULL REFERENCES returns(return_id),
            line_no int NOT NULL,
            order_id text NOT NULL,
            line_id text NOT NULL,
            sku text NOT NULL,
            qty int NOT NULL CHECK (qty > 0),
            condition text NOT NULL CHECK (condition IN ('sellable', 'damaged')),
            location_id text NOT NULL,
            bin text NOT NULL,
            lot text NOT NULL,
            refund numeric(18,4) NOT NULL,
            PRIMARY KEY (return_id, line_no)
        );
        CREATE INDEX return_lines_order_idx ON return_lines (order_id, line_id);
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
