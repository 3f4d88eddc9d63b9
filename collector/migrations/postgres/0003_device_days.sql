-- The compliance trend's rollup, PostgreSQL flavour; ../sqlite/0003_device_days.sql
-- is the same. One row per device and UTC day: that day's latest report
-- (by issued_at, then sequence) and whether no check in it failed. Ingest
-- upserts it in the same transaction as the reports, so the overview reads
-- a small row per device and day instead of a month of reports.
CREATE TABLE device_days (
    device_id  TEXT    NOT NULL REFERENCES devices (id),
    -- Days since 1970-01-01, of issued_at (UTC).
    day        BIGINT  NOT NULL,
    issued_at  BIGINT  NOT NULL,
    sequence   BIGINT  NOT NULL,
    compliant  BOOLEAN NOT NULL,
    PRIMARY KEY (device_id, day)
);
CREATE INDEX device_days_day ON device_days (day, compliant);

-- Reports stored before this table existed. issued_at is never negative
-- here (reports from before 1970 are refused), so integer division is the
-- floor.
INSERT INTO device_days (device_id, day, issued_at, sequence, compliant)
SELECT device_id, day, issued_at, sequence, compliant FROM (
    SELECT device_id, issued_at / 86400000 AS day, issued_at, sequence,
           summary NOT LIKE '%"fail":%' AS compliant,
           ROW_NUMBER() OVER (PARTITION BY device_id, issued_at / 86400000
                              ORDER BY issued_at DESC, sequence DESC) AS n
    FROM reports
) AS latest WHERE n = 1;
