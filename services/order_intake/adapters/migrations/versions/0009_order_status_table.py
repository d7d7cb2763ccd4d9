"""order_intake: an order's status and allocation version in a narrow table of their own
(``order_status``), out of the wide ``orders`` row

Every allocation result changes an order's status and version. In ``orders`` that update
rewrote the whole row (customer and address documents) and, the status being indexed, added an
entry to every index of the table again: the primary key, (channel, external_id), the status
index, the customer e-mail index and the customer name's trigram GIN index, a dozen entries or
more. It was PostgreSQL's most expensive statement in ``oms bench steady`` (59 us per row, 8 % of
its time: docs/benchmark.md, tenth wave). ``order_status`` holds what changes with the order's
progress, with the channel and receipt time copied (they never change) so that the staff's list
by status and channel, newest first, still reads one index: a status change writes a narrow row
and two index entries; a new version with the same status changes nothing indexed and can be
done in place (``fillfactor = 70``). Orders are never deleted, so every order has its status row,
written in the statement that inserts the order.

Revision ID: 0009
"""

from libs.database.migrations import execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE order_status (
            order_id text PRIMARY KEY,
            channel text NOT NULL,
            received_at timestamptz NOT NULL,
            status text NOT NULL DEFAULT 'pending',
            allocation_version int NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        ) WITH (fillfactor = 70);
        INSERT INTO order_status (order_id, channel, received_at, status, allocation_version, updated_at)
            SELECT order_id, channel, received_at, status, allocation_version, updated_at FROM orders;
        CREATE INDEX order_status_idx ON order_status (status, channel, received_at);
        DROP INDEX orders_status_idx;
        ALTER TABLE orders DROP COLUMN status, DROP COLUMN allocation_version;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER TABLE orders ADD COLUMN status text NOT NULL DEFAULT 'pending',
            ADD COLUMN allocation_version int NOT NULL DEFAULT 0;
        UPDATE orders o SET status = s.status, allocation_version = s.allocation_version
            FROM order_status s WHERE s.order_id = o.order_id;
        CREATE INDEX orders_status_idx ON orders (status, channel, received_at);
        DROP TABLE order_status;
        """
    )
