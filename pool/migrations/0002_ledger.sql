-- The ledger (pool/src/ledger/pg.rs): the journal of record and the balances it
-- leaves, written in the same transaction. Entries are the JSON the sled ledger
-- keeps (`payouts::Entry`), in TEXT as the store's records are; amounts inside
-- them are integers in the smallest unit, never floats.

-- Append-only: one row per entry, numbered from 0 without gaps (`seq`, as the
-- sled journal), recorded at most once per idempotency key (`key`: `share/JOB/N`,
-- `deposit/REF`, `settle/JOB`, ... as `payouts::keys` names them; so a job has
-- at most one settlement). Shares also fill `job` and `position`, their place
-- in the job's credit list, which is unique per job.
CREATE TABLE ledger_journal (
    seq      BIGINT PRIMARY KEY CHECK (seq >= 0),
    key      TEXT COLLATE "C" NOT NULL UNIQUE,
    kind     TEXT NOT NULL,
    at_ms    BIGINT NOT NULL,
    job      TEXT COLLATE "C",
    position BIGINT CHECK (position >= 0),
    entry    TEXT NOT NULL,
    UNIQUE (job, position)
);
-- The PPLNS window and recent shares read shares newest first.
CREATE INDEX ledger_journal_shares ON ledger_journal (seq) WHERE kind = 'share';

-- An entry, once committed, is never changed or removed, whoever asks.
CREATE FUNCTION ledger_journal_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_journal is append-only: a recorded entry is never changed or removed (record a new entry instead)';
END
$$;
CREATE TRIGGER ledger_journal_no_update_or_delete
    BEFORE UPDATE OR DELETE ON ledger_journal
    FOR EACH ROW EXECUTE FUNCTION ledger_journal_is_append_only();
CREATE TRIGGER ledger_journal_no_truncate
    BEFORE TRUNCATE ON ledger_journal
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_journal_is_append_only();

-- Every account an entry touched (zero included) and the balance the journal
-- leaves it: a cache, checked against a replay of the journal when the ledger
-- opens. The CHECK is the no-overdraft rule's last line: the ledger refuses an
-- overdraft before it writes (`payouts::State::effects`), and a write that would
-- take a balance below zero anyway fails its whole transaction.
CREATE TABLE ledger_balances (
    account TEXT COLLATE "C" PRIMARY KEY,
    balance BIGINT NOT NULL CHECK (balance >= 0)
);
