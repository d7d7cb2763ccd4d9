"""inventory: drop the reserved mirror; stock takes ask allocation for reserved quantities

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
        ALTER TABLE positions DROP COLUMN reserved, DROP COLUMN reserved_as_of;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER TABLE positions ADD COLUMN reserved int NOT NULL DEFAULT 0, ADD COLUMN reserved_as_of timestamptz;
        """
    )
