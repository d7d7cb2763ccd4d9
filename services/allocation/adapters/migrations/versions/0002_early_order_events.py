"""allocation: early_order_events (cancellations and changes that arrived before their order)

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
        CREATE TABLE early_order_events (
            id bigserial PRIMARY KEY,
            order_id text NOT NULL,
            event_id uuid NOT NULL,
            envelope bytea NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX early_order_events_order_idx ON early_order_events (order_id);
        """
    )
