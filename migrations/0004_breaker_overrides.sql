-- Operators' breaker overrides (force open, force closed, back to auto), the latest
-- per endpoint. An override is written here together with its audit entry, in one
-- transaction, and only then applied; every process sharing the store applies the
-- stored ones at start and follows new ones by `revision` (issue: overrides lived
-- in one process's memory, were lost on restart and applied before their audit).
CREATE TABLE breaker_overrides (
    endpoint  TEXT    NOT NULL PRIMARY KEY,
    -- `auto`, `force_open` or `force_closed`.
    mode      TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    at_ms     BIGINT  NOT NULL,
    -- One more than the largest before it, whatever the endpoint: followers read
    -- the rows past the revision they have applied.
    revision  BIGINT  NOT NULL
);
CREATE INDEX breaker_overrides_revision ON breaker_overrides (revision);
