"""allocation: orders.location_choice (channel rules' restricted / preferred locations and
per-order location priorities, as OrderPlaced.locations carried them; JSON text) and
orders.hold (the reason staff held the whole order, OrderHeld; null when not held)

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
        ALTER TABLE orders ADD COLUMN location_choice text;
        ALTER TABLE orders ADD COLUMN hold text;
        """
    )
