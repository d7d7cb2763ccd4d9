"""order intake: customer_erasures (that a customer's personal data was erased, and when)

Revision ID: 0004
"""

from libs.database.migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE customer_erasures (
            customer_id text PRIMARY KEY,
            erased_at timestamptz NOT NULL DEFAULT now(),
            erased_by text NOT NULL,
            reason text NOT NULL,
            orders int NOT NULL
        );
        """
    )
