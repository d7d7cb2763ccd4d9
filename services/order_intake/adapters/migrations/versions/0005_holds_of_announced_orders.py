"""order intake: order_holds.announced (a hold staff put on an order allocation already knows:
published as OrderHeld; changes are not kept back for it)

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
        ALTER TABLE order_holds ADD COLUMN announced boolean NOT NULL DEFAULT false;
        """
    )
