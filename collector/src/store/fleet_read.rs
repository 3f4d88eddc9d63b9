//! Reading the fleet: device listings, a device's detail, the summary, the
//! metrics' counts, the trend and the longest-failing devices.
//!
//! Built on `fleet_sql`'s statements and written once for both engines; each
//! view that takes several queries reads them from one snapshot.

use chrono::{DateTime, Utc};

use super::devices::DEVICE_BY_ID;
use super::engine::{Stmt, stmt, stmt_from};
use super::rows::*;
use super::*;

impl Store {
    /// One page of the devices matching `query`, and how many match in all.
    pub async fn list_devices(&self, query: &DeviceQuery) -> Result<DevicePage, StoreError> {
        // One read transaction: in WAL mode it reads one snapshot, so the
        // total, the page and its verdicts agree.
        let mut tx = self.pools.begin_snapshot().await?;
        let count = fleet_sql::device_count(self.pools.dialect(), query);
        let total: i64 = Stmt::fleet(&count).fetch_one(&mut tx).await?.value("n")?;
        let page = fleet_sql::device_page(self.pools.dialect(), query);
        let mut devices = Vec::new();
        for row in Stmt::fleet(&page).fetch_all(&mut tx).await? {
            let status: String = row.value("overall_status")?;
            devices.push((device_from_row(&row)?, parse_device_status(&status)?));
        }
        let mut rules = Vec::new();
        if !devices.is_empty() {
            let ids: Vec<String> = devices.iter().map(|(d, _)| d.device_id.clone()).collect();
            let sql = fleet_sql::rule_statuses(self.pools.dialect(), query.at, &ids);
            for row in Stmt::fleet(&sql).fetch_all(&mut tx).await? {
                let status: String = row.value("status")?;
                rules.push((
                    row.value("device_id")?,
                    row.value("rule_id")?,
                    parse_status(&status)?,
                ));
            }
        }
        tx.commit().await?;
        Ok(DevicePage {
            devices: assemble_listings(devices, rules),
            total: from_db_integer(total, "device count")?,
        })
    }

    /// One device with its verdicts (exceptions applied at `at`), keys,
    /// newest `history` reports and active exceptions; `None` when unknown.
    pub async fn device_detail(
        &self,
        device_id: &str,
        at: DateTime<Utc>,
        history: u32,
    ) -> Result<Option<DeviceDetail>, StoreError> {
        let mut tx = self.pools.begin_snapshot().await?;
        let row = stmt(DEVICE_BY_ID)
            .bind(device_id)
            .fetch_optional(&mut tx)
            .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(None);
        };
        let device = device_from_row(&row)?;
        let verdicts = stmt_from(format!(
            "SELECT rule_id, status, mode, summary, evidence, fix, status_since, updated_at, \
                    report_sequence \
             FROM latest_verdicts WHERE device_id = $1 ORDER BY rule_id{c}",
            c = self.pools.dialect().binary_collation()
        ))
        .bind(device_id)
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(verdict_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let keys = stmt_from(format!(
            "SELECT key_id, created_at, revoked_at FROM device_keys \
             WHERE device_id = $1 ORDER BY created_at, key_id{c}",
            c = self.pools.dialect().binary_collation()
        ))
        .bind(device_id)
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(key_info_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let reports = stmt(
            "SELECT sequence, digest, prev_digest, issued_at, received_at, sequence_gap, \
                    chain_broken, summary \
             FROM reports WHERE device_id = $1 ORDER BY sequence DESC LIMIT $2",
        )
        .bind(device_id)
        .bind(i64::from(history))
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(history_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let exceptions = stmt(
            "SELECT id, device_id, rule_id, until, reason, approver, created_at \
             FROM exceptions WHERE device_id = $1 AND until > $2 \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(device_id)
        .bind(to_millis(at))
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(exception_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        let (verdicts, status) = apply_exceptions(verdicts, &exceptions, at);
        Ok(Some(DeviceDetail {
            device,
            status,
            verdicts,
            keys,
            reports,
            exceptions,
        }))
    }

    /// The fleet at `at`: a device is stale when not seen within `stale_after`.
    pub async fn fleet_summary(
        &self,
        at: DateTime<Utc>,
        stale_after: chrono::TimeDelta,
    ) -> Result<FleetSummary, StoreError> {
        let mut tx = self.pools.begin_snapshot().await?;
        let counts = fleet_sql::summary_counts(self.pools.dialect(), at, at - stale_after);
        let mut summary = fleet_counts_from_row(&Stmt::fleet(&counts).fetch_one(&mut tx).await?)?;
        let by_rule = fleet_sql::failing_by_rule(self.pools.dialect(), at);
        for row in Stmt::fleet(&by_rule).fetch_all(&mut tx).await? {
            summary
                .failing_by_rule
                .push(named_count_from_row(&row, "rule_id")?);
        }
        tx.commit().await?;
        Ok(summary)
    }

    /// Devices by overall status at `at`, for `/metrics`.
    pub async fn devices_by_status(
        &self,
        at: DateTime<Utc>,
    ) -> Result<DeviceStatusCounts, StoreError> {
        let sql = fleet_sql::status_buckets(self.pools.dialect(), at);
        let mut buckets = Vec::new();
        for row in Stmt::fleet(&sql).read_all(&self.pools).await? {
            buckets.push(named_count_from_row(&row, "bucket")?);
        }
        count_buckets(buckets)
    }

    /// Every OS name among the devices, sorted, for the dashboard's filter.
    pub async fn os_names(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT os_name{} AS os_name FROM devices ORDER BY 1",
            self.pools.dialect().binary_collation()
        );
        let rows = stmt_from(sql).read_all(&self.pools).await?;
        rows.iter().map(|row| row.value("os_name")).collect()
    }

    /// The compliance trend by UTC day of `issued_at`, for reports issued in
    /// `[from, to)`; days without reports are absent.
    pub async fn compliance_trend(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TrendDay>, StoreError> {
        let sql = fleet_sql::compliance_trend(self.pools.dialect(), from, to);
        let mut days = Vec::new();
        for row in Stmt::fleet(&sql).read_all(&self.pools).await? {
            days.push(trend_day_from_row(&row)?);
        }
        Ok(days)
    }

    /// The `limit` active devices failing longest (after exceptions at `at`):
    /// oldest `failing_since` first, ties by device id.
    pub async fn longest_failing(
        &self,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FailingDevice>, StoreError> {
        let sql = fleet_sql::longest_failing(self.pools.dialect(), at, limit);
        let mut rows = Vec::new();
        for row in Stmt::fleet(&sql).read_all(&self.pools).await? {
            rows.push(failing_rule_from_row(&row)?);
        }
        group_failing(rows)
    }
}
