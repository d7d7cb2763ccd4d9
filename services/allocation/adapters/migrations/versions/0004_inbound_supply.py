"""allocation: inbound supply (purchase orders mirrored from inventory) and the pre-sales promised from it

Revision ID: 0004
"""

from libs.database.migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE inbound_supply (
            purchase_order_id text PRIMARY KEY,
            sku text NOT NULL,
            location_id text NOT NULL,
            qty int NOT NULL,
            expected_date date NOT NULL,
            supplier_reference text,
            status text NOT NULL,
            received_qty int NOT NULL DEFAULT 0,
            version int NOT NULL,
            review_pending boolean NOT NULL DEFAULT true,
            available int NOT NULL DEFAULT 0,  -- units nobody in the queue takes yet (the feed's inbound)
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX inbound_supply_sku_idx ON inbound_supply (sku) WHERE status = 'open';
        CREATE INDEX inbound_supply_review_idx ON inbound_supply (sku) WHERE review_pending;
        CREATE TABLE presales (
            order_id text NOT NULL,
            line_id text NOT NULL,
            purchase_order_id text NOT NULL,
            sku text NOT NULL,
            qty int NOT NULL CHECK (qty > 0),
            promised_date date NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (order_id, line_id, purchase_order_id)
        );
        CREATE INDEX presales_sku_idx ON presales (sku);
        CREATE INDEX presales_order_idx ON presales (order_id);
        """
    )


def downgrade() -> None:
    execute_script("DROP TABLE presales; DROP TABLE inbound_supply;")
