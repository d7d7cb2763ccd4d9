"""order intake: connector_orders (the last applied state of each order a store connector sent)

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
        CREATE TABLE connector_orders (
            channel text NOT NULL,
            external_id text NOT NULL,
            source_updated_at timestamptz,
            cancelled boolean NOT NULL DEFAULT false,
            -- the lines as the connector last set them ({line_id: [sku, qty, unit_price]}): the
            -- order's own lines change only when allocation answers, later
            lines jsonb,
            PRIMARY KEY (channel, external_id)
        );
        """
    )
