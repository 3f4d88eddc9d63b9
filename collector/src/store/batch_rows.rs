//! The rows the engines' batch writes read and the one SQL fragment they
//! share, kept apart from `reports.rs` (which calls the engines) so the
//! arrows run one way: reports → sqlite/postgres → batch_rows.

/// A device's chain head as the engines read it: id, highest sequence, its
/// digest, whether the device is revoked.
pub(super) type HeadRow = (String, Option<i64>, Option<String>, bool);

/// A digest already stored: device id, sequence, digest.
pub(super) type StoredDigestRow = (String, i64, String);

/// How an upsert sets `status_since` on an existing verdict row.
#[derive(Debug, Clone, Copy)]
pub(super) enum StatusSince {
    /// Keep the stored time when the status is unchanged.
    KeepIfSame,
    /// The status began within the batch: take the batch's time.
    FromBatch,
}

impl StatusSince {
    /// A fixed SQL fragment; the only text ever formatted into a query here.
    pub(super) fn sql(self) -> &'static str {
        match self {
            Self::KeepIfSame => {
                "CASE WHEN latest_verdicts.status = excluded.status \
                 THEN latest_verdicts.status_since ELSE excluded.status_since END"
            }
            Self::FromBatch => "excluded.status_since",
        }
    }
}
