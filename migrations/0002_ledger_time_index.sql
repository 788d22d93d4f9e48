-- The ledger's time-only index had no reader: spend reads the rollups, audits of the
-- ledger itself go by feature and time (usage_ledger_feature_at), single requests by
-- id. Each index is one more B-tree insert for every request the gateway serves.
DROP INDEX usage_ledger_at;
