-- Several pool processes on one database (issue 14; pool/src/cluster.rs).
--
-- Each running `zkpool serve` is a node: a row it renews while it lives (its
-- lease, in the database's clock, so the hosts' clocks do not matter). A node
-- claims chunks of a job's statements for its own miners; a claim counts while
-- its node's lease does, so a dead process's chunks go back to the others when
-- its lease runs out. Claims only spread the work: a statement is credited once
-- because its proof is stored under the primary key of `proofs`.
CREATE TABLE nodes (
    id         TEXT COLLATE "C" PRIMARY KEY,
    stratum    TEXT NOT NULL,
    http       TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    until      TIMESTAMPTZ NOT NULL,
    -- Its authorized sessions and distinct workers at its last renewal (the
    -- dashboard's totals over every process).
    sessions   BIGINT NOT NULL DEFAULT 0,
    workers    BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE claims (
    job   TEXT COLLATE "C" NOT NULL,
    chunk BIGINT NOT NULL CHECK (chunk >= 0),
    node  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (job, chunk)
);

-- What every process polls for: the running jobs.
CREATE INDEX jobs_running ON jobs (id) WHERE state = 'running';
