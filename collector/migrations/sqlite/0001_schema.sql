-- Palisade collector schema, SQLite flavour. The PostgreSQL flavour in
-- ../postgres/0001_schema.sql has the same tables, columns and indexes; keep
-- them in step.
--
-- Conventions (collector/src/store/mod.rs):
-- - Times are INTEGER unix milliseconds, so both backends compare and sort
--   them the same way.
-- - Booleans are INTEGER 0/1 with a CHECK, the closest SQLite has.
-- - Hashes and keys are BLOBs whose length is checked; hex is for display.
-- - JSON (report summary, evidence, audit details) is TEXT, returned byte for
--   byte as stored.
-- - Tables are STRICT so a wrongly typed bind is an error, not a silent
--   conversion.

-- One enrolled device. Host facts are those of its latest stored report
-- (or of its enrollment until the first report arrives).
CREATE TABLE devices (
    id                    TEXT    NOT NULL PRIMARY KEY,
    hostname              TEXT    NOT NULL,
    os_name               TEXT    NOT NULL,
    os_version            TEXT    NOT NULL,
    kernel_version        TEXT    NOT NULL,
    arch                  TEXT    NOT NULL,
    agent_version         TEXT    NOT NULL,
    -- The policy the device last reported running; NULL before its first report.
    policy_id             TEXT,
    policy_version        INTEGER,
    -- Which secret enrolled it, for the audit trail.
    enrollment_secret_id  TEXT    NOT NULL,
    enrolled_at           INTEGER NOT NULL,
    -- Collector time of the latest stored report; NULL before the first.
    last_seen_at          INTEGER,
    revoked_at            INTEGER,
    -- The head of the device's hash chain: the highest stored sequence and its
    -- digest. NULL before the first report.
    last_sequence         INTEGER,
    last_digest           TEXT,
    -- Set once a report arrived after a gap in sequence or with a prev_digest
    -- that does not match the stored head; never cleared by ingest.
    sequence_gap          INTEGER NOT NULL DEFAULT 0 CHECK (sequence_gap IN (0, 1)),
    chain_broken          INTEGER NOT NULL DEFAULT 0 CHECK (chain_broken IN (0, 1))
) STRICT;
-- Device list: sort by hostname, filter stale devices by last_seen_at.
CREATE INDEX devices_hostname ON devices (hostname);
CREATE INDEX devices_last_seen_at ON devices (last_seen_at);

-- A device's signing keys. A device that re-enrolls gets a new device row and
-- a new key; key ids are unique across the fleet.
CREATE TABLE device_keys (
    key_id      TEXT    NOT NULL PRIMARY KEY,
    device_id   TEXT    NOT NULL REFERENCES devices (id),
    public_key  BLOB    NOT NULL CHECK (length(public_key) = 32),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX device_keys_device_id ON device_keys (device_id);

CREATE TABLE enrollment_secrets (
    id           TEXT    NOT NULL PRIMARY KEY,
    -- SHA-256 of the secret's random part; the secret itself is never stored.
    secret_hash  BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    label        TEXT    NOT NULL,
    -- NULL: unlimited.
    max_uses     INTEGER CHECK (max_uses IS NULL OR max_uses >= 0),
    uses         INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0),
    -- NULL: never expires.
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL
) STRICT;

-- Every stored report, with the envelope exactly as received so it can be
-- verified again later. UNIQUE (device_id, sequence) is the last line of
-- defence against storing two reports at one sequence; it also serves the
-- "digest at this sequence" and "highest sequence per device" lookups.
CREATE TABLE reports (
    id            INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    device_id     TEXT    NOT NULL REFERENCES devices (id),
    key_id        TEXT    NOT NULL REFERENCES device_keys (key_id),
    sequence      INTEGER NOT NULL CHECK (sequence >= 0),
    -- Hex SHA-256 of the payload, and the previous report's digest as the
    -- agent claims it.
    digest        TEXT    NOT NULL,
    prev_digest   TEXT    NOT NULL,
    issued_at     INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    envelope      BLOB    NOT NULL,
    -- JSON object: number of checks by status, e.g. {"fail":1,"pass":3}.
    summary       TEXT    NOT NULL,
    -- How this report was judged against the chain when it was stored.
    sequence_gap  INTEGER NOT NULL CHECK (sequence_gap IN (0, 1)),
    chain_broken  INTEGER NOT NULL CHECK (chain_broken IN (0, 1)),
    UNIQUE (device_id, sequence)
) STRICT;
-- Retention purges by received_at.
CREATE INDEX reports_received_at ON reports (received_at);

-- Each device's latest verdict per rule, from its highest stored report.
CREATE TABLE latest_verdicts (
    device_id        TEXT    NOT NULL REFERENCES devices (id),
    rule_id          TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    mode             TEXT    NOT NULL,
    summary          TEXT    NOT NULL,
    evidence         TEXT    NOT NULL,
    fix              TEXT    NOT NULL,
    -- issued_at of the first report in the current run of this status (the
    -- device's clock: when the state was observed, even if the report sat in
    -- the spool for a while).
    status_since     INTEGER NOT NULL,
    -- received_at of the report that last wrote this row (collector clock).
    updated_at       INTEGER NOT NULL,
    -- The sequence of that report; rows from older reports are rules the
    -- device no longer reports and are deleted.
    report_sequence  INTEGER NOT NULL,
    PRIMARY KEY (device_id, rule_id)
) STRICT;
-- Fleet summary: failing devices by rule.
CREATE INDEX latest_verdicts_rule_status ON latest_verdicts (rule_id, status);

-- Every policy ever set; the current one is the highest revision.
-- AUTOINCREMENT so a revision number is never reused, even after deletes.
CREATE TABLE policies (
    revision        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    policy_id       TEXT    NOT NULL,
    policy_version  INTEGER NOT NULL,
    text            TEXT    NOT NULL,
    digest          TEXT    NOT NULL,
    envelope        BLOB    NOT NULL,
    created_at      INTEGER NOT NULL,
    created_by      TEXT    NOT NULL
) STRICT;

CREATE TABLE admin_users (
    username         TEXT    NOT NULL PRIMARY KEY,
    -- An argon2 PHC string.
    password_hash    TEXT    NOT NULL,
    role             TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    locked_until     INTEGER,
    created_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE api_tokens (
    id          TEXT    NOT NULL PRIMARY KEY,
    -- SHA-256 of the token's random part.
    token_hash  BLOB    NOT NULL CHECK (length(token_hash) = 32),
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    label       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

CREATE TABLE sessions (
    -- SHA-256 of the cookie value; the cookie itself is never stored.
    id_hash     BLOB    NOT NULL PRIMARY KEY CHECK (length(id_hash) = 32),
    username    TEXT    NOT NULL REFERENCES admin_users (username) ON DELETE CASCADE,
    csrf_token  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_username ON sessions (username);
-- Expired sessions are swept by expires_at.
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- IT's exceptions: this device, this rule, until a date, why, who approved.
CREATE TABLE exceptions (
    id          INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT    NOT NULL REFERENCES devices (id),
    rule_id     TEXT    NOT NULL,
    until       INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    approver    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX exceptions_device_rule ON exceptions (device_id, rule_id);

CREATE TABLE audit_log (
    id       INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    details  TEXT    NOT NULL
) STRICT;
-- The log is read newest first.
CREATE INDEX audit_log_at ON audit_log (at, id);
