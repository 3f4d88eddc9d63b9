//! Grace periods: when each rule first failed, and the deadline that follows.
//!
//! A rule that fails is stamped with `first_failed_at` (the start of the
//! current run of failures, kept across restarts in
//! `<state_dir>/deadlines.json`); in `nudge` mode it also gets a deadline
//! `grace_days` later, so IT sees who is overdue and the nudge helper can
//! grow more insistent. A rule that stops failing (passes, is not
//! applicable, or is excepted) forgets its stamp; one whose state cannot be
//! determined (`unknown`, `error`) keeps it, since an unknown is not a fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use palisade_shared::Policy;
use palisade_shared::report::{CheckResult, CheckStatus, Mode};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "deadlines.json";

/// When each currently failing rule first failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    #[serde(skip)]
    path: Option<PathBuf>,
    first_failed_at: BTreeMap<String, DateTime<Utc>>,
}

impl Deadlines {
    /// Loads the stamps; a missing file is a fresh start, and so is a
    /// corrupt one (logged): the worst outcome is a deadline that starts
    /// again, never a crash.
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join(FILE_NAME);
        let mut loaded = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Self>(&bytes).unwrap_or_else(|err| {
                tracing::warn!(path = %path.display(), error = %err, "unreadable deadlines file; grace periods start again");
                Self::default()
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read the deadlines file; grace periods start again");
                Self::default()
            }
        };
        loaded.path = Some(path);
        loaded
    }

    /// Stamps `results` (observed at `now`) and remembers the stamps. Pure
    /// apart from the save at the end.
    pub fn apply(&mut self, policy: &Policy, results: &mut [CheckResult], now: DateTime<Utc>) {
        let before = self.first_failed_at.clone();
        for result in results.iter_mut() {
            let rule = result.id.to_string();
            match result.status {
                CheckStatus::Fail => {
                    let first = *self.first_failed_at.entry(rule.clone()).or_insert(now);
                    result.first_failed_at = Some(first);
                    result.deadline =
                        match (result.mode, crate::checks::rule_settings(policy, &rule)) {
                            (Mode::Nudge, Some(settings)) => {
                                Some(first + TimeDelta::days(i64::from(settings.grace_days)))
                            }
                            _ => None,
                        };
                }
                CheckStatus::Unknown | CheckStatus::Error => {
                    // Not a fix: keep the stamp, but claim no failure now.
                    result.first_failed_at = None;
                    result.deadline = None;
                }
                _ => {
                    self.first_failed_at.remove(&rule);
                    result.first_failed_at = None;
                    result.deadline = None;
                }
            }
        }
        // A rule the policy dropped forgets its stamp.
        self.first_failed_at
            .retain(|rule, _| results.iter().any(|r| r.id.as_str() == rule));
        if self.first_failed_at != before {
            self.save();
        }
    }

    fn save(&self) {
        let Some(path) = &self.path else {
            return;
        };
        let written = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                crate::durable::write_atomic(path, &bytes, crate::durable::FileMode::OwnerOnly)
            });
        if let Err(err) = written {
            tracing::warn!(path = %path.display(), error = %err, "cannot save the deadlines; they restart if the agent does");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_shared::RuleId;
    use serde_json::Map;

    fn result(rule: &str, status: CheckStatus, mode: Mode) -> CheckResult {
        CheckResult {
            id: RuleId::new(rule),
            status,
            mode,
            summary: String::new(),
            evidence: Map::new(),
            fix: String::new(),
            probe_duration_us: 0,
            enforcement: None,
            first_failed_at: None,
            deadline: None,
        }
    }

    fn baseline() -> Policy {
        Policy::parse(crate::policy::BASELINE_POLICY).expect("baseline parses")
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn a_nudged_failure_gets_a_deadline_grace_days_after_it_first_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut deadlines = Deadlines::load(dir.path());
        let policy = baseline();
        let mut first = [result("disk_encryption", CheckStatus::Fail, Mode::Nudge)];
        deadlines.apply(&policy, &mut first, at("2026-11-01T09:00:00Z"));
        assert_eq!(first[0].first_failed_at, Some(at("2026-11-01T09:00:00Z")));
        // Baseline: disk_encryption grace_days = 14.
        assert_eq!(first[0].deadline, Some(at("2026-11-15T09:00:00Z")));

        // Later cycles, and a restarted agent, keep the first stamp.
        let mut reloaded = Deadlines::load(dir.path());
        let mut later = [result("disk_encryption", CheckStatus::Fail, Mode::Nudge)];
        reloaded.apply(&policy, &mut later, at("2026-11-10T09:00:00Z"));
        assert_eq!(later[0].first_failed_at, Some(at("2026-11-01T09:00:00Z")));
        assert_eq!(later[0].deadline, Some(at("2026-11-15T09:00:00Z")));
    }

    #[test]
    fn unknown_keeps_the_stamp_and_a_pass_clears_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut deadlines = Deadlines::load(dir.path());
        let policy = baseline();
        let rule = "password_policy";
        deadlines.apply(
            &policy,
            &mut [result(rule, CheckStatus::Fail, Mode::Nudge)],
            at("2026-11-01T09:00:00Z"),
        );
        let mut unknown = [result(rule, CheckStatus::Unknown, Mode::Nudge)];
        deadlines.apply(&policy, &mut unknown, at("2026-11-02T09:00:00Z"));
        assert_eq!(unknown[0].deadline, None);
        let mut again = [result(rule, CheckStatus::Fail, Mode::Nudge)];
        deadlines.apply(&policy, &mut again, at("2026-11-03T09:00:00Z"));
        assert_eq!(again[0].first_failed_at, Some(at("2026-11-01T09:00:00Z")));

        deadlines.apply(
            &policy,
            &mut [result(rule, CheckStatus::Pass, Mode::Nudge)],
            at("2026-11-04T09:00:00Z"),
        );
        let mut fresh = [result(rule, CheckStatus::Fail, Mode::Nudge)];
        deadlines.apply(&policy, &mut fresh, at("2026-11-05T09:00:00Z"));
        assert_eq!(fresh[0].first_failed_at, Some(at("2026-11-05T09:00:00Z")));
    }

    #[test]
    fn audit_and_enforce_failures_are_stamped_without_a_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut deadlines = Deadlines::load(dir.path());
        let mut results = [
            result("screen_lock", CheckStatus::Fail, Mode::Enforce),
            result("usb_storage", CheckStatus::Fail, Mode::Audit),
        ];
        deadlines.apply(&baseline(), &mut results, at("2026-11-01T09:00:00Z"));
        for r in &results {
            assert_eq!(r.first_failed_at, Some(at("2026-11-01T09:00:00Z")));
            assert_eq!(r.deadline, None);
        }
    }

    #[test]
    fn a_corrupt_file_starts_again_instead_of_failing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").expect("write");
        let mut deadlines = Deadlines::load(dir.path());
        let mut results = [result("disk_encryption", CheckStatus::Fail, Mode::Nudge)];
        deadlines.apply(&baseline(), &mut results, at("2026-11-01T09:00:00Z"));
        assert_eq!(results[0].first_failed_at, Some(at("2026-11-01T09:00:00Z")));
        assert!(
            Deadlines::load(dir.path())
                .first_failed_at
                .contains_key("disk_encryption")
        );
    }
}
