-- Palisade collector schema, PostgreSQL flavour. The SQLite flavour in
-- ../sqlite/0001_schema.sql has the same tables, columns and indexes; keep
-- them in step. The comments there explain each column; here only what
-- differs is noted.
--
-- Times are BIGINT unix milliseconds (not timestamptz) so both backends
-- compare and sort them the same way. JSON is TEXT, not jsonb: jsonb
-- re-orders keys and drops whitespace, and the store returns what it was
-- given byte for byte.

CREATE TABLE devices (
    id                    TEXT    NOT NULL PRIMARY KEY,
    hostname              TEXT    NOT NULL,
    os_name               TEXT    NOT NULL,
    os_version            TEXT    NOT NULL,
    kernel_version        TEXT    NOT NULL,
    arch                  TEXT    NOT NULL,
    agent_version         TEXT    NOT NULL,
    policy_id             TEXT,
    policy_version        BIGINT,
    enrollment_secret_id  TEXT    NOT NULL,
    enrolled_at           BIGINT  NOT NULL,
    last_seen_at          BIGINT,
    revoked_at            BIGINT,
    last_sequence         BIGINT,
    last_digest           TEXT,
    sequence_gap          BOOLEAN NOT NULL DEFAULT FALSE,
    chain_broken          BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX devices_hostname ON devices (hostname);
CREATE INDEX devices_last_seen_at ON devices (last_seen_at);

CREATE TABLE device_keys (
    key_id      TEXT    NOT NULL PRIMARY KEY,
    device_id   TEXT    NOT NULL REFERENCES devices (id),
    public_key  BYTEA   NOT NULL CHECK (octet_length(public_key) = 32),
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX device_keys_device_id ON device_keys (device_id);

CREATE TABLE enrollment_secrets (
    id           TEXT    NOT NULL PRIMARY KEY,
    secret_hash  BYTEA   NOT NULL CHECK (octet_length(secret_hash) = 32),
    label        TEXT    NOT NULL,
    max_uses     BIGINT  CHECK (max_uses IS NULL OR max_uses >= 0),
    uses         BIGINT  NOT NULL DEFAULT 0 CHECK (uses >= 0),
    expires_at   BIGINT,
    created_at   BIGINT  NOT NULL,
    created_by   TEXT    NOT NULL
);

CREATE TABLE reports (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id     TEXT    NOT NULL REFERENCES devices (id),
    key_id        TEXT    NOT NULL REFERENCES device_keys (key_id),
    sequence      BIGINT  NOT NULL CHECK (sequence >= 0),
    digest        TEXT    NOT NULL,
    prev_digest   TEXT    NOT NULL,
    issued_at     BIGINT  NOT NULL,
    received_at   BIGINT  NOT NULL,
    envelope      BYTEA   NOT NULL,
    summary       TEXT    NOT NULL,
    sequence_gap  BOOLEAN NOT NULL,
    chain_broken  BOOLEAN NOT NULL,
    UNIQUE (device_id, sequence)
);
CREATE INDEX reports_received_at ON reports (received_at);

CREATE TABLE latest_verdicts (
    device_id        TEXT    NOT NULL REFERENCES devices (id),
    rule_id          TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    mode             TEXT    NOT NULL,
    summary          TEXT    NOT NULL,
    evidence         TEXT    NOT NULL,
    fix              TEXT    NOT NULL,
    status_since     BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    report_sequence  BIGINT  NOT NULL,
    PRIMARY KEY (device_id, rule_id)
);
CREATE INDEX latest_verdicts_rule_status ON latest_verdicts (rule_id, status);

-- An identity column never hands out the same number twice, like SQLite's
-- AUTOINCREMENT. With several collectors the current policy is still the
-- highest revision.
CREATE TABLE policies (
    revision        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    policy_id       TEXT    NOT NULL,
    policy_version  BIGINT  NOT NULL,
    text            TEXT    NOT NULL,
    digest          TEXT    NOT NULL,
    envelope        BYTEA   NOT NULL,
    created_at      BIGINT  NOT NULL,
    created_by      TEXT    NOT NULL
);

CREATE TABLE admin_users (
    username         TEXT    NOT NULL PRIMARY KEY,
    password_hash    TEXT    NOT NULL,
    role             TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    failed_attempts  BIGINT  NOT NULL DEFAULT 0,
    locked_until     BIGINT,
    created_at       BIGINT  NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT    NOT NULL PRIMARY KEY,
    token_hash  BYTEA   NOT NULL CHECK (octet_length(token_hash) = 32),
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    label       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE sessions (
    id_hash     BYTEA   NOT NULL PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    username    TEXT    NOT NULL REFERENCES admin_users (username) ON DELETE CASCADE,
    csrf_token  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX sessions_username ON sessions (username);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE exceptions (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   TEXT    NOT NULL REFERENCES devices (id),
    rule_id     TEXT    NOT NULL,
    until       BIGINT  NOT NULL,
    reason      TEXT    NOT NULL,
    approver    TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
CREATE INDEX exceptions_device_rule ON exceptions (device_id, rule_id);

CREATE TABLE audit_log (
    id       BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT  NOT NULL,
    actor    TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    details  TEXT    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at, id);
