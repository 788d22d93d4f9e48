-- Expiry for admin tokens and gateway keys (issue: production hardening, credentials
-- and the admin surface). `expires_at_ms`: from then on the token or key is refused,
-- as if revoked; NULL: it never expires. Revocation stays `revoked_at_ms`.
ALTER TABLE admin_tokens ADD COLUMN expires_at_ms BIGINT NULL;
ALTER TABLE gateway_keys ADD COLUMN expires_at_ms BIGINT NULL;
