"""allocation: a change counter per SKU for the availability feed (``skus.availability_changes``)

Every transaction that changes what a SKU shows to the storefronts adds one to the counter as it
marks the SKU dirty (it holds the SKU's row lock from its start: repository.py). The feed reads the
dirty SKUs with their counters without locking them, works their events out, and clears a flag
only where the counter is still the one it read and no transaction holds the row (``SKIP
LOCKED``): a change committed meanwhile keeps its SKU dirty for the next window. Before, the feed
locked up to 2,000 SKUs for its whole pass, and allocation's order batches waited for it: in one
`steady` run 23 waits, 1.7 s in all, up to 127 ms each (docs/benchmark.md, tenth wave).

``fillfactor = 50``: a counter update of a SKU already dirty changes no indexed value, so it can be
done in place (HOT) when the page has room.

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
        ALTER TABLE skus ADD COLUMN availability_changes bigint NOT NULL DEFAULT 0;
        ALTER TABLE skus SET (fillfactor = 50);
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER TABLE skus RESET (fillfactor);
        ALTER TABLE skus DROP COLUMN availability_changes;
        """
    )
