"""inventory: locations of kind dropship (a supplier that ships for the seller)

Revision ID: 0003
"""

from libs.database.migrations import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE locations DROP CONSTRAINT locations_kind_check;
        ALTER TABLE locations ADD CONSTRAINT locations_kind_check
            CHECK (kind IN ('warehouse', 'store', '3pl', 'dropship'));
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER TABLE locations DROP CONSTRAINT locations_kind_check;
        ALTER TABLE locations ADD CONSTRAINT locations_kind_check CHECK (kind IN ('warehouse', 'store', '3pl'));
        """
    )
