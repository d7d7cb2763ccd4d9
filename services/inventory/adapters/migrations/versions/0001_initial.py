"""inventory: locations, bins, positions, append-only ledger, receipts, stock takes, inbox, outbox

Revision ID: 0001
"""

from libs.database.migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script(
        """
        CREATE TABLE locations (
            id text PRIMARY KEY,
            name text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('warehouse', 'store', '3pl')),
            country text NOT NULL,
            lat double precision,
            lon double precision,
            active boolean NOT NULL DEFAULT true,
            priority int NOT NULL DEFAULT 0,
            ships_to text[] NOT NULL DEFAULT '{}',
            channels text[],
            pickup boolean NOT NULL DEFAULT false,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE bins (
            location_id text NOT NULL REFERENCES locations(id),
            bin text NOT NULL,
            quarantine boolean NOT NULL DEFAULT false,
            PRIMARY KEY (location_id, bin)
        );
        CREATE TABLE positions (
            sku text NOT NULL,
            location_id text NOT NULL,
            bin text NOT NULL,
            lot text NOT NULL DEFAULT '',
            received_at timestamptz,
            expires_at timestamptz,
            sellable boolean NOT NULL DEFAULT true,
            on_hand int NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
            seq int NOT NULL DEFAULT 0,
            reserved int NOT NULL DEFAULT 0,
            reserved_as_of timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (sku, location_id, bin, lot),
            FOREIGN KEY (location_id, bin) REFERENCES bins(location_id, bin)
        );
        CREATE INDEX positions_location_idx ON positions (location_id, bin, sku, lot);
        CREATE TABLE ledger (
            id bigserial PRIMARY KEY,
            sku text NOT NULL,
            location_id text NOT NULL,
            bin text NOT NULL,
            lot text NOT NULL,
            delta int NOT NULL CHECK (delta <> 0),
            on_hand_after int NOT NULL CHECK (on_hand_after >= 0),
            seq int NOT NULL,
            reason text NOT NULL,
            reason_code text,
            reference text,
            actor text,
            order_id text,
            allocation_id bigint,
            release_shortfall boolean NOT NULL DEFAULT false,
            at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (sku, location_id, bin, lot, seq)
        );
        CREATE INDEX ledger_location_idx ON ledger (location_id, sku, id);
        CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN RAISE EXCEPTION 'the stock ledger is append-only'; END $$;
        CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
            FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
        CREATE TABLE receipts (
            location_id text NOT NULL,
            reference text NOT NULL,
            actor text,
            lines int NOT NULL,
            at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (location_id, reference)
        );
        CREATE TABLE stocktakes (
            id text PRIMARY KEY,
            location_id text NOT NULL REFERENCES locations(id),
            mode text NOT NULL CHECK (mode IN ('all_bins', 'specific_bins')),
            release_shortfall boolean NOT NULL,
            filename text,
            rows jsonb NOT NULL,
            status text NOT NULL DEFAULT 'previewed',
            uploaded_by text,
            uploaded_at timestamptz NOT NULL DEFAULT now(),
            submitted_by text,
            submitted_at timestamptz,
            result jsonb
        );
        CREATE TABLE inbox (
            event_id uuid PRIMARY KEY,
            processed_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE outbox (
            id bigserial PRIMARY KEY,
            topic text NOT NULL,
            key text NOT NULL,
            value bytea NOT NULL,
            headers jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )
