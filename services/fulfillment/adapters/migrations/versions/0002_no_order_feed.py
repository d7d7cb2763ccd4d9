"""fulfillment: no copy of order lines; ship_complete comes with allocation's snapshots and
prices from order intake when a return is recorded

Revision ID: 0002
"""

from libs.database.migrations import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE allocation_snapshots ADD COLUMN ship_complete boolean NOT NULL DEFAULT false;
        UPDATE allocation_snapshots s SET ship_complete = true
            WHERE EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = s.order_id AND l.ship_complete);
        DROP TABLE order_lines;
        """
    )


def downgrade() -> None:
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
        ALTER TABLE allocation_snapshots DROP COLUMN ship_complete;
        """
    )
