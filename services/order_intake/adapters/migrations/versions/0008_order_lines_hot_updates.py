"""order_intake: order lines take their allocation updates in place, and a line insert no longer
runs a foreign-key check

- ``fillfactor = 70``: every allocation result rewrites its order's lines (allocated, backordered,
  packed, shipped...). Only the primary key indexes the table and no update changes it, so the
  update can be HOT (no new index entry) whenever the row's page has room; with full pages 61 % of
  the updates in ``oms bench steady`` were not.
- The foreign key to ``orders`` is dropped: lines are only ever written in the transaction that
  writes their order (``place_orders``) or for an order the same statement batch found
  (``_apply_snapshots``), and orders are never deleted; the check was a trigger and a row lock on
  the order per line inserted.

Measured with ``python -m bench.hotpath_intake --orders 20000`` (three rounds, alternating):
PostgreSQL CPU per order, placing plus tracking, 0.120 / 0.123 / 0.116 ms before, 0.108 / 0.103 /
0.099 after; the fillfactor alone took tracking's share 0.061 -> 0.054, the dropped check placing's
0.057 -> 0.045 (docs/benchmark.md, ninth wave).

Revision ID: 0008
"""

from libs.database.migrations import execute_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        ALTER TABLE order_lines SET (fillfactor = 70);
        ALTER TABLE order_lines DROP CONSTRAINT order_lines_order_id_fkey;
        """
    )


def downgrade() -> None:
    execute_script(
        """
        ALTER TABLE order_lines ADD CONSTRAINT order_lines_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders(order_id);
        ALTER TABLE order_lines RESET (fillfactor);
        """
    )
