"""order intake: indexes for the customer search (``GET /v1/customers?email=&name=``)

- ``orders_customer_email_idx``: ``lower(customer->>'email')``, the search's e-mail comparison;
- ``orders_customer_name_trgm_idx``: a trigram GIN index on ``customer->>'name'`` for the
  search's ``ILIKE '%part%'`` (PostgreSQL's contrib extension pg_trgm, installed in ``public``;
  a trusted extension since PostgreSQL 13, so the database owner may create it). Where the
  extension cannot be created (no privilege, or it lives in another schema) the name index is
  left out with a NOTICE and the name search scans, as before.

Revision ID: 0006
"""

from alembic import op

from libs.database.migrations import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


# One statement (execute_script splits at ';' + line end, which a DO block contains).
NAME_INDEX = """
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'pg_trgm not installed (%): the customer name search scans', SQLERRM;
    END;
    IF EXISTS (SELECT 1 FROM pg_opclass c JOIN pg_namespace n ON n.oid = c.opcnamespace
               WHERE c.opcname = 'gin_trgm_ops' AND n.nspname = 'public') THEN
        CREATE INDEX orders_customer_name_trgm_idx ON orders USING gin ((customer->>'name') public.gin_trgm_ops);
    END IF;
END
$$
"""


def upgrade() -> None:
    execute_script(
        """
        CREATE INDEX orders_customer_email_idx ON orders (lower(customer->>'email'));
        """
    )
    op.execute(NAME_INDEX)
