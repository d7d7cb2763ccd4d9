"""allocation: allocation ids handed out in blocks of 1,024 (the sequence's increment)

One ``nextval`` reserves a block (repository.py ``assign_allocation_ids``): a batch of 500 orders
made ~1,500 allocations and called ``nextval`` ~1,500 times, 1.6 % of PostgreSQL's time in
`steady` (docs/benchmark.md, tenth wave); now two calls. Ids stay unique and increase in the
order they were taken; a block's unused ids are skipped.

Revision ID: 0008
"""

from libs.database.migrations import execute_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER SEQUENCE allocations_allocation_id_seq INCREMENT BY 1024;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER SEQUENCE allocations_allocation_id_seq INCREMENT BY 1;
        """
    )
