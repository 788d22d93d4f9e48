-- The migration playbook and the ingress dialects, per request: the shadow a
-- shadow request ran for (its cost is migration cost, under the team
-- '(migration)'), the rollout and the arm that served the request, the drill that
-- took an endpoint out of its plan, and the client API it came in by.
ALTER TABLE usage_ledger ADD COLUMN shadow_id TEXT NULL;
ALTER TABLE usage_ledger ADD COLUMN rollout_id TEXT NULL;
ALTER TABLE usage_ledger ADD COLUMN rollout_arm TEXT NULL;
ALTER TABLE usage_ledger ADD COLUMN drill_id TEXT NULL;
ALTER TABLE usage_ledger ADD COLUMN dialect TEXT NOT NULL DEFAULT 'chat';
