-- Crossbar's store: configuration versions, audit log, keys and tokens, the usage
-- ledger with its per-minute rollups, breaker events and feedback.
--
-- Portable SQL (SQLite and PostgreSQL): BIGINT / INTEGER / TEXT / DOUBLE PRECISION
-- only; timestamps are BIGINT ms since the Unix epoch; money is BIGINT nano-units
-- (1e-9 of the currency); booleans are INTEGER 0/1; ids are assigned by the
-- application or by the inserting statement (`COALESCE(MAX(id), 0) + 1`), never by
-- AUTOINCREMENT / SERIAL. See README.md beside this file.

-- Every published configuration, immutable. The newest version is the active one.
CREATE TABLE config_versions (
    version        BIGINT  NOT NULL PRIMARY KEY,
    created_at_ms  BIGINT  NOT NULL,
    author         TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    -- The version this one was published on top of (NULL for the first).
    parent         BIGINT  NULL,
    -- Rollbacks: the version restored.
    restored_from  BIGINT  NULL,
    -- The whole RouterConfig as JSON.
    config_json    TEXT    NOT NULL
);

-- Who did what: publishes (with their diff), rollbacks, breaker overrides, keys.
CREATE TABLE audit_log (
    id             BIGINT  NOT NULL PRIMARY KEY,
    at_ms          BIGINT  NOT NULL,
    actor          TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    version        BIGINT  NULL,
    -- JSON list of {path, before, after}.
    changes_json   TEXT    NOT NULL,
    message        TEXT    NOT NULL
);

-- Gateway keys belong to teams. Only the SHA-256 (lowercase hex) of a key is kept.
CREATE TABLE gateway_keys (
    id                   TEXT    NOT NULL PRIMARY KEY,
    team                 TEXT    NOT NULL,
    name                 TEXT    NOT NULL,
    key_sha256           TEXT    NOT NULL UNIQUE,
    created_at_ms        BIGINT  NOT NULL,
    revoked_at_ms        BIGINT  NULL,
    requests_per_minute  BIGINT  NULL
);

-- Admin API bearer tokens, with their role. Only the SHA-256 of a token is kept.
CREATE TABLE admin_tokens (
    id             TEXT    NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    role           TEXT    NOT NULL,
    token_sha256   TEXT    NOT NULL UNIQUE,
    created_at_ms  BIGINT  NOT NULL,
    revoked_at_ms  BIGINT  NULL
);

-- The usage ledger: one row per client request, written in batches.
CREATE TABLE usage_ledger (
    request_id         TEXT              NOT NULL PRIMARY KEY,
    at_ms              BIGINT            NOT NULL,
    team               TEXT              NOT NULL,
    key_id             TEXT              NOT NULL,
    feature            TEXT              NOT NULL,
    variant            TEXT              NOT NULL,
    config_version     BIGINT            NOT NULL,
    stream             INTEGER           NOT NULL,
    endpoint           TEXT              NULL,
    provider           TEXT              NULL,
    region             TEXT              NULL,
    geography          TEXT              NULL,
    provisioned        INTEGER           NOT NULL,
    spilled            INTEGER           NOT NULL,
    fallback_depth     INTEGER           NOT NULL,
    outcome            TEXT              NOT NULL,
    status             INTEGER           NOT NULL,
    latency_ms         DOUBLE PRECISION  NOT NULL,
    ttft_ms            DOUBLE PRECISION  NULL,
    prompt_tokens      BIGINT            NOT NULL,
    completion_tokens  BIGINT            NOT NULL,
    cached_tokens      BIGINT            NOT NULL,
    cost_nanos         BIGINT            NOT NULL,
    attempts           INTEGER           NOT NULL,
    -- JSON list of AttemptRecord.
    attempts_json      TEXT              NOT NULL,
    -- Only when the operator enabled `privacy.store_text`.
    prompt_text        TEXT              NULL,
    completion_text    TEXT              NULL
);
CREATE INDEX usage_ledger_at ON usage_ledger (at_ms);
CREATE INDEX usage_ledger_feature_at ON usage_ledger (feature, at_ms);

-- Per-minute rollups of the ledger, updated in the same transaction as the ledger
-- rows: spend reads these (and usage_hour), never the ledger. `endpoint` and
-- `provider` are '' when no endpoint was reached (key columns cannot be NULL in
-- PostgreSQL).
CREATE TABLE usage_minute (
    minute_ms          BIGINT            NOT NULL,
    feature            TEXT              NOT NULL,
    team               TEXT              NOT NULL,
    endpoint           TEXT              NOT NULL,
    provider           TEXT              NOT NULL,
    variant            TEXT              NOT NULL,
    provisioned        INTEGER           NOT NULL,
    requests           BIGINT            NOT NULL,
    -- Outcome neither `ok` nor `cancelled`.
    errors             BIGINT            NOT NULL,
    spilled            BIGINT            NOT NULL,
    prompt_tokens      BIGINT            NOT NULL,
    completion_tokens  BIGINT            NOT NULL,
    cached_tokens      BIGINT            NOT NULL,
    cost_nanos         BIGINT            NOT NULL,
    latency_ms_sum     DOUBLE PRECISION  NOT NULL,
    ttft_ms_sum        DOUBLE PRECISION  NOT NULL,
    ttft_count         BIGINT            NOT NULL,
    PRIMARY KEY (minute_ms, feature, team, endpoint, provider, variant, provisioned)
);

-- The same rollups per hour, for long ranges: a spend report over days reads the
-- hours inside its range and only the minutes at its edges.
CREATE TABLE usage_hour (
    hour_ms            BIGINT            NOT NULL,
    feature            TEXT              NOT NULL,
    team               TEXT              NOT NULL,
    endpoint           TEXT              NOT NULL,
    provider           TEXT              NOT NULL,
    variant            TEXT              NOT NULL,
    provisioned        INTEGER           NOT NULL,
    requests           BIGINT            NOT NULL,
    errors             BIGINT            NOT NULL,
    spilled            BIGINT            NOT NULL,
    prompt_tokens      BIGINT            NOT NULL,
    completion_tokens  BIGINT            NOT NULL,
    cached_tokens      BIGINT            NOT NULL,
    cost_nanos         BIGINT            NOT NULL,
    latency_ms_sum     DOUBLE PRECISION  NOT NULL,
    ttft_ms_sum        DOUBLE PRECISION  NOT NULL,
    ttft_count         BIGINT            NOT NULL,
    PRIMARY KEY (hour_ms, feature, team, endpoint, provider, variant, provisioned)
);

-- Breaker state changes.
CREATE TABLE breaker_events (
    id               BIGINT            NOT NULL PRIMARY KEY,
    endpoint         TEXT              NOT NULL,
    at_ms            BIGINT            NOT NULL,
    from_state       TEXT              NOT NULL,
    to_state         TEXT              NOT NULL,
    signal           TEXT              NOT NULL,
    -- The whole Transition as JSON (router clock time, stage, reason).
    transition_json  TEXT              NOT NULL
);
CREATE INDEX breaker_events_at ON breaker_events (at_ms);

-- Thumbs up / down on a request; the latest vote counts.
CREATE TABLE feedback (
    request_id  TEXT     NOT NULL PRIMARY KEY,
    at_ms       BIGINT   NOT NULL,
    positive    INTEGER  NOT NULL
);
