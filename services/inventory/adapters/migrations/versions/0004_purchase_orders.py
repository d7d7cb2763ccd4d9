"""inventory: purchase orders (expected receipts of one SKU at one location)

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
        CREATE TABLE purchase_orders (
            id text PRIMARY KEY,
            sku text NOT NULL,
            location_id text NOT NULL REFERENCES locations(id),
            qty int NOT NULL CHECK (qty > 0),
            expected_date date NOT NULL,
            supplier_reference text,
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cancelled', 'received')),
            received_qty int NOT NULL DEFAULT 0 CHECK (received_qty >= 0),
            receipt_reference text,
            version int NOT NULL DEFAULT 1,
            actor text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX purchase_orders_sku_idx ON purchase_orders (sku, status);
        """
    )


def downgrade() -> None:
    execute_script("DROP TABLE purchase_orders;")
