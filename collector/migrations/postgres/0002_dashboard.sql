-- The dashboard's additions, PostgreSQL flavour; ../sqlite/0002_dashboard.sql
-- has the same columns and indexes.

-- The person last seen using the device (the report's host.console_user).
-- NULL until a report names one; a later report without a user keeps the
-- last one known, since IT looks laptops up by who uses them.
ALTER TABLE devices ADD COLUMN console_user TEXT;

-- The overview's compliance trend reads the last 30 days of reports by
-- issued_at.
CREATE INDEX reports_issued_at ON reports (issued_at);
