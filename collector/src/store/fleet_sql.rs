//! The SQL behind the fleet views (device listing, fleet summary, devices by
//! status), written once for both backends.
//!
//! These queries are the SQL half of the exception rule in the store's
//! module documentation: `effective` is every latest verdict with a `fail`
//! turned into `excepted` while an exception is active, and `listed` is every
//! device with its overall status derived from those. They must agree with
//! [`super::effective_status`] and [`super::overall_status`]; the store
//! tests compare the two.
//!
//! [`Sql`] accepts only `&'static str` fragments and bound values, so no
//! value can ever be formatted into the text; it writes each backend's
//! placeholders (`?` for SQLite, `$n` for PostgreSQL). It must not run
//! anything: the backends bind and execute what it builds.

use chrono::{DateTime, Utc};

use super::{DeviceQuery, DeviceSort, MAX_DEVICES_PER_PAGE, to_millis, utc_day};

/// Which database the text is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Int(i64),
    Text(String),
}

/// A statement under construction: fixed fragments and bound values.
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    dialect: Dialect,
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            text: String::new(),
            binds: Vec::new(),
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn binds(&self) -> &[Bind] {
        &self.binds
    }

    fn push(&mut self, fragment: &'static str) -> &mut Self {
        self.text.push_str(fragment);
        self
    }

    fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.binds.len().to_string());
            }
        }
        self
    }

    fn bind_int(&mut self, value: i64) -> &mut Self {
        self.bind(Bind::Int(value))
    }

    fn bind_text(&mut self, value: impl Into<String>) -> &mut Self {
        self.bind(Bind::Text(value.into()))
    }

    /// Text comparison and sorting byte by byte: PostgreSQL's default
    /// collation follows the locale, SQLite's is binary.
    fn binary_collation(&mut self) -> &mut Self {
        if self.dialect == Dialect::Postgres {
            self.push(" COLLATE \"C\"");
        }
        self
    }

    /// The views every fleet query starts from, judged at `at`.
    fn fleet_views(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.push(
            "WITH effective AS ( \
               SELECT v.device_id, v.rule_id, \
                 CASE WHEN v.status = 'fail' AND EXISTS ( \
                     SELECT 1 FROM exceptions e \
                     WHERE e.device_id = v.device_id AND e.rule_id = v.rule_id AND e.until > ",
        )
        .bind_int(to_millis(at))
        .push(
            ") THEN 'excepted' ELSE v.status END AS status \
               FROM latest_verdicts v), \
             counts AS ( \
               SELECT device_id, \
                 SUM(CASE WHEN status = 'fail' THEN 1 ELSE 0 END) AS failing, \
                 SUM(CASE WHEN status IN ('unknown', 'error') THEN 1 ELSE 0 END) AS unsure \
               FROM effective GROUP BY device_id), \
             listed AS ( \
               SELECT d.id, d.hostname, d.os_name, d.os_version, d.kernel_version, d.arch, \
                 d.agent_version, d.policy_id, d.policy_version, d.enrollment_secret_id, \
                 d.enrolled_at, d.last_seen_at, d.revoked_at, d.last_sequence, d.last_digest, \
                 d.sequence_gap, d.chain_broken, d.console_user, \
                 CASE WHEN c.device_id IS NULL THEN 'unknown' \
                      WHEN c.failing > 0 THEN 'fail' \
                      WHEN c.unsure > 0 THEN 'unknown' \
                      ELSE 'pass' END AS overall_status \
               FROM devices d LEFT JOIN counts c ON c.device_id = d.id) ",
        )
    }

    /// `WHERE …` for the filters of `query`.
    fn device_filters(&mut self, query: &DeviceQuery) -> &mut Self {
        self.push("WHERE 1 = 1");
        if let Some(status) = query.status {
            self.push(" AND overall_status = ")
                .bind_text(status.as_str());
        }
        if let Some(rule) = &query.rule {
            self.push(
                " AND EXISTS (SELECT 1 FROM effective f WHERE f.device_id = listed.id AND f.rule_id = ",
            )
            .bind_text(rule.rule_id.as_str());
            if let Some(status) = rule.status {
                self.push(" AND f.status = ").bind_text(status.as_str());
            }
            self.push(")");
        }
        if let Some(os) = &query.os {
            self.push(" AND os_name = ").bind_text(os.as_str());
        }
        if let Some(before) = query.stale_before {
            self.push(" AND COALESCE(last_seen_at, enrolled_at) < ")
                .bind_int(to_millis(before));
        }
        if let Some(since) = query.seen_since {
            self.push(" AND COALESCE(last_seen_at, enrolled_at) >= ")
                .bind_int(to_millis(since));
        }
        if let Some(search) = &query.search {
            let pattern = format!("%{}%", escape_like(search));
            // LOWER on both sides: each database folds case its own way
            // (SQLite ASCII only, PostgreSQL by Unicode), but the same way on
            // both sides of the comparison.
            self.push(" AND (LOWER(hostname) LIKE LOWER(")
                .bind_text(pattern.clone())
                .push(") ESCAPE '\\' OR LOWER(os_name) LIKE LOWER(")
                .bind_text(pattern.clone())
                // A device with no known user has NULL here, which LIKE
                // never matches: it is found by hostname or OS only.
                .push(") ESCAPE '\\' OR LOWER(console_user) LIKE LOWER(")
                .bind_text(pattern)
                .push(") ESCAPE '\\')");
        }
        match query.revoked {
            None => {}
            Some(true) => {
                self.push(" AND revoked_at IS NOT NULL");
            }
            Some(false) => {
                self.push(" AND revoked_at IS NULL");
            }
        }
        self
    }

    /// `ORDER BY …`: the sort's keys in the asked direction, then the id so
    /// pages never overlap or skip.
    fn device_order(&mut self, sort: DeviceSort, descending: bool) -> &mut Self {
        let direction = if descending { " DESC" } else { " ASC" };
        self.push(" ORDER BY ");
        for (index, (key, text)) in sort_keys(sort).iter().enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.push(key);
            if *text {
                self.binary_collation();
            }
            self.push(direction);
        }
        self.push(", id");
        self.binary_collation();
        self.push(" ASC")
    }
}

/// The SQL keys of a sort and whether each is text (and so needs the
/// binary collation). Fixed fragments only.
fn sort_keys(sort: DeviceSort) -> &'static [(&'static str, bool)] {
    match sort {
        DeviceSort::Hostname => &[("LOWER(hostname)", true), ("hostname", true)],
        // A device never seen sorts as the oldest.
        DeviceSort::LastSeen => &[("COALESCE(last_seen_at, -1)", false)],
        DeviceSort::Os => &[
            ("os_name", true),
            ("os_version", true),
            ("LOWER(hostname)", true),
        ],
        DeviceSort::Status => &[
            (
                "CASE overall_status WHEN 'pass' THEN 0 WHEN 'unknown' THEN 1 ELSE 2 END",
                false,
            ),
            ("LOWER(hostname)", true),
        ],
        DeviceSort::EnrolledAt => &[("enrolled_at", false)],
    }
}

/// `text` with LIKE's wildcards and the escape character escaped, so it
/// matches only itself.
pub(crate) fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The columns of `listed` a device row is read from, plus `overall_status`.
const DEVICE_COLUMNS: &str = "SELECT id, hostname, os_name, os_version, kernel_version, arch, \
     agent_version, policy_id, policy_version, enrollment_secret_id, enrolled_at, last_seen_at, \
     revoked_at, last_sequence, last_digest, sequence_gap, chain_broken, console_user, \
     overall_status \
     FROM listed ";

/// The page of devices `query` asks for.
pub(crate) fn device_page(dialect: Dialect, query: &DeviceQuery) -> Sql {
    let per_page = i64::from(query.per_page.clamp(1, MAX_DEVICES_PER_PAGE));
    let offset = i64::from(query.page.max(1) - 1) * per_page;
    let mut sql = Sql::new(dialect);
    sql.fleet_views(query.at)
        .push(DEVICE_COLUMNS)
        .device_filters(query)
        .device_order(query.sort, query.descending)
        .push(" LIMIT ")
        .bind_int(per_page)
        .push(" OFFSET ")
        .bind_int(offset);
    sql
}

/// How many devices match `query` (column `n`).
pub(crate) fn device_count(dialect: Dialect, query: &DeviceQuery) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.fleet_views(query.at)
        .push("SELECT COUNT(*) AS n FROM listed ")
        .device_filters(query);
    sql
}

/// The effective status of every rule of the given devices (columns
/// `device_id`, `rule_id`, `status`).
pub(crate) fn rule_statuses(dialect: Dialect, at: DateTime<Utc>, device_ids: &[String]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.fleet_views(at)
        .push("SELECT device_id, rule_id, status FROM effective WHERE device_id IN (");
    for (index, id) in device_ids.iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.bind_text(id.as_str());
    }
    sql.push(") ORDER BY rule_id");
    sql.binary_collation();
    sql
}

/// The fleet's counts (columns `n_devices`, `n_compliant`, `n_failing`,
/// `n_unknown`, `n_stale`, `n_revoked`).
pub(crate) fn summary_counts(
    dialect: Dialect,
    at: DateTime<Utc>,
    stale_before: DateTime<Utc>,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.fleet_views(at)
        .push(
            "SELECT \
               COALESCE(SUM(CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END), 0) AS n_devices, \
               COALESCE(SUM(CASE WHEN revoked_at IS NULL AND overall_status = 'pass' \
                 THEN 1 ELSE 0 END), 0) AS n_compliant, \
               COALESCE(SUM(CASE WHEN revoked_at IS NULL AND overall_status = 'fail' \
                 THEN 1 ELSE 0 END), 0) AS n_failing, \
               COALESCE(SUM(CASE WHEN revoked_at IS NULL AND overall_status = 'unknown' \
                 THEN 1 ELSE 0 END), 0) AS n_unknown, \
               COALESCE(SUM(CASE WHEN revoked_at IS NULL \
                 AND COALESCE(last_seen_at, enrolled_at) < ",
        )
        .bind_int(to_millis(stale_before))
        .push(
            " THEN 1 ELSE 0 END), 0) AS n_stale, \
               COALESCE(SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS n_revoked \
             FROM listed",
        );
    sql
}

/// Active devices failing each rule after exceptions (columns `rule_id`,
/// `n`).
pub(crate) fn failing_by_rule(dialect: Dialect, at: DateTime<Utc>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.fleet_views(at)
        .push(
            "SELECT f.rule_id, COUNT(*) AS n FROM effective f \
             JOIN devices d ON d.id = f.device_id \
             WHERE d.revoked_at IS NULL AND f.status = 'fail' \
             GROUP BY f.rule_id ORDER BY f.rule_id",
        )
        .binary_collation();
    sql
}

/// The `limit` active devices failing longest at `at` (after exceptions),
/// one row per failing rule (columns `device_id`, `hostname`,
/// `console_user`, `since`, `rule_id`), rows of one device together.
pub(crate) fn longest_failing(dialect: Dialect, at: DateTime<Utc>, limit: u32) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "WITH failing AS ( \
           SELECT v.device_id, v.rule_id, v.status_since FROM latest_verdicts v \
           JOIN devices d ON d.id = v.device_id \
           WHERE d.revoked_at IS NULL AND v.status = 'fail' AND NOT EXISTS ( \
             SELECT 1 FROM exceptions e \
             WHERE e.device_id = v.device_id AND e.rule_id = v.rule_id AND e.until > ",
    )
    .bind_int(to_millis(at))
    .push(
        ")), \
         top AS ( \
           SELECT device_id, MIN(status_since) AS since FROM failing GROUP BY device_id \
           ORDER BY since, device_id",
    )
    .binary_collation()
    .push(" LIMIT ")
    .bind_int(i64::from(limit))
    .push(
        ") \
         SELECT t.device_id, d.hostname, d.console_user, t.since, f.rule_id \
         FROM top t JOIN devices d ON d.id = t.device_id \
         JOIN failing f ON f.device_id = t.device_id \
         ORDER BY t.since, t.device_id",
    )
    .binary_collation()
    .push(", f.rule_id")
    .binary_collation();
    sql
}

/// The compliance trend for the UTC days from `from`'s through `to`'s
/// (columns `day`, days since the epoch in UTC; `reporting`; `compliant`),
/// from the `device_days` rollup that ingest keeps: each device's latest
/// report of each day. Reading one row per device and day, not a month of
/// reports with their envelopes, is what keeps the overview fast.
pub(crate) fn compliance_trend(dialect: Dialect, from: DateTime<Utc>, to: DateTime<Utc>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push(
        "SELECT day, COUNT(*) AS reporting, \
           SUM(CASE WHEN compliant THEN 1 ELSE 0 END) AS compliant \
         FROM device_days WHERE day >= ",
    )
    .bind_int(utc_day(from))
    .push(" AND day <= ")
    .bind_int(utc_day(to))
    .push(" GROUP BY day ORDER BY day");
    sql
}

/// Devices by overall status, revoked ones apart (columns `bucket`, `n`).
pub(crate) fn status_buckets(dialect: Dialect, at: DateTime<Utc>) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.fleet_views(at).push(
        "SELECT CASE WHEN revoked_at IS NOT NULL THEN 'revoked' ELSE overall_status END \
           AS bucket, COUNT(*) AS n \
         FROM listed GROUP BY 1",
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeviceStatus, RuleFilter};
    use palisade_shared::report::CheckStatus;

    #[test]
    fn like_wildcards_and_the_escape_character_are_escaped() {
        assert_eq!(escape_like("a%b_c\\d"), "a\\%b\\_c\\\\d");
        assert_eq!(escape_like("' OR 1=1 --"), "' OR 1=1 --");
    }

    /// Every value, however hostile, is a bound parameter: the text holds
    /// only fixed fragments and placeholders.
    #[test]
    fn values_never_reach_the_text() {
        let at = DateTime::from_timestamp_millis(1_750_000_000_000).unwrap_or_default();
        let hostile = "'; DROP TABLE devices; --";
        let mut query = DeviceQuery::new(at);
        query.status = Some(DeviceStatus::Fail);
        query.rule = Some(RuleFilter {
            rule_id: hostile.to_owned(),
            status: Some(CheckStatus::Excepted),
        });
        query.os = Some(hostile.to_owned());
        query.search = Some(hostile.to_owned());
        query.stale_before = Some(at);
        query.seen_since = Some(at);
        query.revoked = Some(false);
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for sort in DeviceSort::ALL {
                query.sort = sort;
                let sql = device_page(dialect, &query);
                assert!(!sql.text().contains("DROP"), "{}", sql.text());
                let placeholders = match dialect {
                    Dialect::Sqlite => sql.text().matches('?').count(),
                    Dialect::Postgres => sql.text().matches('$').count(),
                };
                assert_eq!(placeholders, sql.binds().len(), "{}", sql.text());
            }
        }
        let postgres = device_page(Dialect::Postgres, &query);
        assert!(postgres.text().contains("$12"), "{}", postgres.text());
        assert_eq!(postgres.binds().len(), 12);
    }

    #[test]
    fn paging_is_clamped() {
        let at = DateTime::from_timestamp_millis(0).unwrap_or_default();
        let mut query = DeviceQuery::new(at);
        query.page = 0;
        query.per_page = 10_000;
        let sql = device_page(Dialect::Sqlite, &query);
        let binds = sql.binds();
        assert_eq!(
            &binds[binds.len() - 2..],
            [Bind::Int(i64::from(MAX_DEVICES_PER_PAGE)), Bind::Int(0)]
        );
    }
}
