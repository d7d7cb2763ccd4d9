"""allocation: a version per SKU for the positions each process keeps in memory (``skus.positions_version``)

Every transaction that writes a SKU's positions sets the SKU's ``positions_version`` to a random
64-bit value of its own, under the SKU's row lock (repository.py ``write_changes``). A process
keeps the positions it last wrote or read with that value (``PositionsCache``) and, when it next
locks the SKU, reads them from memory if the row still has that value, else from the table. Loading
every position of every locked SKU was the largest read of an order batch (in `steady`, 578,620
rows, 1.7 s of PostgreSQL's time; docs/benchmark.md, eleventh wave).

Random, not a counter: a counter starts again at 0 when the table is emptied or restored, and a
process that kept old positions would take them for current. NULL (a new SKU, or one not written
since this migration): never read from memory.

Revision ID: 0009
"""

from libs.database.migrations import execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE skus ADD COLUMN positions_version bigint;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER TABLE skus DROP COLUMN positions_version;
        """
    )
