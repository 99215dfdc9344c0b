-- The store's tables (pool/src/store/pg.rs). Records are the same JSON the sled
-- store keeps, in TEXT (not JSONB: JSONB refuses the \u0000 escape, which a
-- failure message could hold); the columns beside them are what queries select
-- and order by. Keys that are listed in order use the "C" collation, so the
-- order is byte order, as in sled.

CREATE TABLE circuits (
    id     TEXT COLLATE "C" PRIMARY KEY,
    record TEXT NOT NULL
);

-- `page_key` is `{created_ms:020}/{id}`: the paging cursor, exactly as the sled
-- store's index keys end. `client` and `public` are set when the job is first
-- stored and never changed, as sled's index entries are.
CREATE TABLE jobs (
    id       TEXT COLLATE "C" PRIMARY KEY,
    client   TEXT COLLATE "C" NOT NULL,
    public   BOOLEAN NOT NULL,
    page_key TEXT COLLATE "C" NOT NULL,
    state    TEXT NOT NULL,
    record   TEXT NOT NULL
);
CREATE INDEX jobs_page ON jobs (page_key);
CREATE INDEX jobs_client_page ON jobs (client, page_key);
CREATE INDEX jobs_public_page ON jobs (page_key) WHERE public;

-- Verified proofs: one per (job, statement index).
CREATE TABLE proofs (
    job    TEXT COLLATE "C" NOT NULL,
    idx    BIGINT NOT NULL CHECK (idx >= 0),
    record TEXT NOT NULL,
    PRIMARY KEY (job, idx)
);

CREATE TABLE results (
    job    TEXT COLLATE "C" PRIMARY KEY,
    record TEXT NOT NULL
);

-- Every statement proven on this pool; the primary key makes a claim happen once
-- however many processes race for it.
CREATE TABLE proven (
    key   TEXT COLLATE "C" PRIMARY KEY,
    proof BYTEA NOT NULL
);

CREATE TABLE clients (
    id     TEXT COLLATE "C" PRIMARY KEY,
    record TEXT NOT NULL
);

-- API key hash -> client, as sled's `client-key/` entries (the latest client
-- added under a hash has it).
CREATE TABLE client_keys (
    key_hash TEXT PRIMARY KEY,
    client   TEXT COLLATE "C" NOT NULL
);

CREATE TABLE worker_tokens (
    account    TEXT COLLATE "C" PRIMARY KEY,
    token_hash TEXT NOT NULL
);

-- Single values: the receipt-signing key's seed.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
