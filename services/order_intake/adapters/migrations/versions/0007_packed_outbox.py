"""order_intake: the packed outbox (one row per written batch of events, libs/messaging/outbox.py)

Revision ID: 0007
"""

from libs.database.migrations import execute_script
from libs.messaging.outbox import PACKED_OUTBOX_DDL, PACKED_OUTBOX_DROP

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(PACKED_OUTBOX_DDL)


def downgrade() -> None:
    execute_script(PACKED_OUTBOX_DROP)
