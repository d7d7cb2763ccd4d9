"""allocation: when a dirty SKU's AvailabilityChanged is due (``skus.availability_due``)

A change near a channel's edge, a stock event or a setting is due at once (the feed's short
window); a busy SKU's changes far from any edge are due after the calm window, so they coalesce
into one event (decision 14). The publisher takes dirty SKUs whose time has come, oldest first.

Revision ID: 0007
"""

from libs.database.migrations import execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE skus ADD COLUMN availability_due timestamptz;
        UPDATE skus SET availability_due = now() WHERE availability_dirty;
        DROP INDEX skus_dirty_idx;
        CREATE INDEX skus_due_idx ON skus (availability_due) WHERE availability_dirty;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP INDEX skus_due_idx;
        CREATE INDEX skus_dirty_idx ON skus (sku) WHERE availability_dirty;
        ALTER TABLE skus DROP COLUMN availability_due;
        """
    )
