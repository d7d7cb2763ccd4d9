"""fulfillment: an order's allocations live in its snapshot row (one JSONB document) instead of
one ``allocations`` row each; ``allocations`` becomes a view of them with the old columns

Per allocated order the mirror wrote one snapshot row and ~3 allocation rows, each with two index
entries (docs/benchmark.md): now it writes the snapshot row alone. The partial index finds the
orders with units still to pick (pick lists) as ``allocations_pick_idx`` did. Existing rows are
moved into the documents (the old table held the live ones, allocated or packed, in these
columns), so an upgraded service keeps the mirror it had.

Revision ID: 0005
"""

from libs.database.migrations import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE allocation_snapshots ADD COLUMN allocations jsonb NOT NULL DEFAULT '[]';
        UPDATE allocation_snapshots s SET allocations = a.doc FROM (
            SELECT order_id, jsonb_agg(jsonb_build_object(
                'allocation_id', allocation_id, 'line_id', line_id, 'sku', sku, 'location_id', location_id,
                'bin', bin, 'lot', lot, 'qty', qty, 'status', status, 'shipment_id', shipment_id
            ) ORDER BY allocation_id) AS doc
            FROM allocations GROUP BY order_id
        ) a WHERE a.order_id = s.order_id;
        DROP TABLE allocations;
        CREATE VIEW allocations AS
            SELECT s.order_id, x.allocation_id, x.line_id, x.sku, x.location_id, x.bin, x.lot, x.qty, x.status,
                   x.shipment_id
            FROM allocation_snapshots s,
                 jsonb_to_recordset(s.allocations) AS x(allocation_id bigint, line_id text, sku text,
                     location_id text, bin text, lot text, qty int, status text, shipment_id text)
            WHERE x.status IN ('allocated', 'packed');
        CREATE INDEX allocation_snapshots_pick_idx ON allocation_snapshots (order_id)
            WHERE allocations @? '$[*] ? (@.status == "allocated")';
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP INDEX allocation_snapshots_pick_idx;
        DROP VIEW allocations;
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
        INSERT INTO allocations
            SELECT s.order_id, x.allocation_id, x.line_id, x.sku, x.location_id, x.bin, x.lot, x.qty, x.status,
                   x.shipment_id
            FROM allocation_snapshots s,
                 jsonb_to_recordset(s.allocations) AS x(allocation_id bigint, line_id text, sku text,
                     location_id text, bin text, lot text, qty int, status text, shipment_id text)
            WHERE x.status IN ('allocated', 'packed');
        ALTER TABLE allocation_snapshots DROP COLUMN allocations;
        """
    )
