"""allocation: the packed outbox (one row per written batch of events, libs/messaging/outbox.py)

Revision ID: 0005
"""

from libs.database.migrations import execute_script
from libs.messaging.outbox import PACKED_OUTBOX_DDL, PACKED_OUTBOX_DROP

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(PACKED_OUTBOX_DDL)


def downgrade() -> None:
    execute_script(PACKED_OUTBOX_DROP)
