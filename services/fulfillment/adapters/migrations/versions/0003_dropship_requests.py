"""fulfillment: dropship requests (lines a dropship supplier is asked to ship) and the
locations allocation named as dropship suppliers

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
        CREATE TABLE dropship_requests (
            request_id text PRIMARY KEY REFERENCES shipments(shipment_id),
            order_id text NOT NULL,
            location_id text NOT NULL,
            status text NOT NULL
                CHECK (status IN ('pending', 'requested', 'rejected', 'confirmed', 'refused')),
            line_ids text[] NOT NULL,
            ship_to jsonb,
            reason text,
            created_at timestamptz NOT NULL DEFAULT now(),
            requested_at timestamptz,
            answered_at timestamptz
        );
        CREATE INDEX dropship_requests_order_idx ON dropship_requests (order_id, location_id);
        CREATE INDEX dropship_requests_location_idx ON dropship_requests (location_id, status);
        CREATE TABLE dropship_locations (
            location_id text PRIMARY KEY
        );
        """
    )


def downgrade() -> None:
    execute_script(
        """
        DROP TABLE dropship_locations;
        DROP TABLE dropship_requests;
        """
    )
