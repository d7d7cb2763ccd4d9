"""allocation: the SKUs waiting for an AvailabilityChanged are rows of ``availability_dirty``, not a
flag of ``skus``

The flag was in a partial index (``skus_dirty_idx ... WHERE availability_dirty``), so every flip
was an update PostgreSQL cannot do in place (not HOT): a new row version and new entries in both
indexes of ``skus``, twice per SKU a window (marked by the order's transaction, cleared by the
publisher). In ``oms bench steady``: 225,266 updates of a 10,001-row table, none HOT, 5.3 per
order, and the table every allocation transaction locks first. Now marking is an insert that is
skipped when the row is there, clearing is a delete, and ``skus`` rows only take row locks.

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
        CREATE TABLE availability_dirty (sku text PRIMARY KEY);
        INSERT INTO availability_dirty (sku) SELECT sku FROM skus WHERE availability_dirty;
        DROP INDEX skus_dirty_idx;
        ALTER TABLE skus DROP COLUMN availability_dirty;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER TABLE skus ADD COLUMN availability_dirty boolean NOT NULL DEFAULT false;
        UPDATE skus SET availability_dirty = true WHERE sku IN (SELECT sku FROM availability_dirty);
        CREATE INDEX skus_dirty_idx ON skus (sku) WHERE availability_dirty;
        DROP TABLE availability_dirty;
        """
    )
