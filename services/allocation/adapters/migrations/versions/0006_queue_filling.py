"""allocation: a SKU whose long backorder queue is being filled chunk by chunk (``skus.filling``)

While set, the SKU's free units belong to the older backorders not loaded yet: no order takes them
in queue order, the availability feed waits, and the refill loop (service_layer/refill.py) fills the
next chunk.

Revision ID: 0006
"""

from libs.database.migrations import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE skus ADD COLUMN filling boolean NOT NULL DEFAULT false;
        CREATE INDEX skus_filling_idx ON skus (sku) WHERE filling;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP INDEX skus_filling_idx;
        ALTER TABLE skus DROP COLUMN filling;
        """
    )
