-- Enrollment secrets can be revoked, SQLite flavour;
-- ../postgres/0004_secret_revocation.sql is the same. NULL: not revoked.
-- A revoked secret is refused at enrollment like any other bad secret;
-- the devices it enrolled stay enrolled (revoke those one by one).
ALTER TABLE enrollment_secrets ADD COLUMN revoked_at INTEGER;
