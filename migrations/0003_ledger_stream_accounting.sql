-- How a streamed answer was accounted (issue: failover after the first token).
-- `usage_estimated`: some tokens are Crossbar's count (the stream broke or the client
-- left before the provider said its usage). `continuations`: times the stream was
-- continued on another endpoint. `skipped_chunks`: malformed upstream chunks that
-- were skipped, never sent to the client. Per-attempt tokens and cost are in
-- `attempts_json`.
ALTER TABLE usage_ledger ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_ledger ADD COLUMN continuations INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_ledger ADD COLUMN skipped_chunks INTEGER NOT NULL DEFAULT 0;
