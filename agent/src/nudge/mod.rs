//! `palisade-agent nudge`: the helper in each person's desktop session that
//! tells them, politely, what the daemon found wrong and how to fix it.
//!
//! The daemon runs as root (SYSTEM on Windows) and cannot reach a user's
//! desktop; this helper, started at login (XDG autostart, LaunchAgent, Run
//! key; see `packaging/`), reads the daemon's status socket
//! ([`crate::status::fetch_status`]) once a [`POLL_INTERVAL`] and shows
//! notifications. It works offline: the socket is local and nothing here
//! talks to the collector.
//!
//! - [`schedule`]: the pure politeness rules ([`schedule::decide`]): which
//!   failures, how often, when quiet, snoozes, deadlines, events once.
//! - [`message`]: the words of each notification.
//! - [`memory`]: what was shown and snoozed, in one JSON file per user.
//! - [`desktop`]: the OS-specific showing and the buttons.
//!
//! This module is the loop that joins them: fetch, forget what was fixed,
//! decide, show, remember. It never changes the machine (it only reads the
//! socket and writes its own memory file) and never stops on a missing
//! daemon, a missing notification server or a corrupt memory file: each is
//! logged and tried again on the next pass.

pub mod deadline;
pub mod desktop;
pub mod memory;
pub mod message;
pub mod schedule;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Offset as _, TimeZone as _, Utc};
use tokio::sync::mpsc;

use crate::nudge::desktop::{Desktop, NudgeAction};
use crate::nudge::memory::NudgeMemory;
use crate::nudge::schedule::{NudgeSettings, NudgeSubject, SNOOZE};
use crate::status::{self, StatusError};

/// How often the loop reads the status socket. A minute: a USB stick
/// blocked is told about within a minute, and a reminder is never late by
/// more; one local request a minute is nothing for the daemon (which serves
/// from memory) or the laptop.
pub const POLL_INTERVAL: Duration = Duration::from_secs(60);

/// How the helper runs.
#[derive(Debug, Clone)]
pub struct NudgeOptions {
    /// The daemon's status socket.
    pub socket_path: PathBuf,
    /// The memory file; `None` remembers only while running.
    pub memory_path: Option<PathBuf>,
    pub settings: NudgeSettings,
    pub clock: Clock,
}

/// The helper's clock: the system's, or one fixed at an instant (`--now`,
/// for tests, so that every pass and snooze happens at a known time).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    fixed: Option<DateTime<Utc>>,
}

impl Clock {
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock that always reads `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Self { fixed: Some(at) }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }

    /// The local time zone's offset at `at` (from `TZ`, else the system's
    /// zone), read afresh each time so a DST change is followed.
    pub fn local_offset(&self, at: DateTime<Utc>) -> FixedOffset {
        chrono::Local
            .offset_from_utc_datetime(&at.naive_utc())
            .fix()
    }
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassOutcome {
    /// Notifications shown.
    pub shown: usize,
    /// Notifications that could not be shown (to be tried next pass).
    pub failed: Vec<String>,
}

/// The helper's state between passes.
#[derive(Debug)]
pub struct Helper {
    options: NudgeOptions,
    memory: NudgeMemory,
    desktop: Desktop,
}

impl Helper {
    /// Loads the memory file (a corrupt one is logged and replaced by an
    /// empty memory).
    pub fn new(options: NudgeOptions, desktop: Desktop) -> Self {
        let memory = match &options.memory_path {
            Some(path) => NudgeMemory::load(path).unwrap_or_else(|err| {
                tracing::warn!(error = %err, "starting with an empty nudge memory");
                NudgeMemory::default()
            }),
            None => NudgeMemory::default(),
        };
        Self {
            options,
            memory,
            desktop,
        }
    }

    /// Reads the status and shows what is due. An error only when the
    /// status could not be read.
    pub async fn pass(&mut self) -> Result<PassOutcome, StatusError> {
        let status = status::fetch_status(&self.options.socket_path).await?;
        let now = self.options.clock.now();
        let offset = self.options.clock.local_offset(now);
        let mut changed = self.memory.forget_resolved(&status);
        let nudges = schedule::decide(now, offset, &status, &self.memory, &self.options.settings);
        let mut outcome = PassOutcome::default();
        for nudge in nudges {
            match self.desktop.show(&nudge).await {
                Ok(()) => {
                    tracing::info!(title = %nudge.title, urgency = ?nudge.urgency, "shown");
                    match nudge.subject {
                        NudgeSubject::Rule(rule) => self.memory.record_rule_shown(&rule, now),
                        NudgeSubject::Event(key) => self.memory.record_event_shown(key),
                    }
                    changed = true;
                    outcome.shown += 1;
                }
                Err(err) => outcome.failed.push(format!("{}: {err}", nudge.title)),
            }
        }
        if changed {
            self.save();
        }
        Ok(outcome)
    }

    /// Acts on a button the person pressed.
    pub fn act(&mut self, action: NudgeAction) {
        match action {
            NudgeAction::Snooze(rule) => {
                let until = self.options.clock.now() + SNOOZE;
                self.memory.snooze(&rule, until);
                // Saved before it is logged, so whoever reads the log line
                // can rely on the file.
                self.save();
                tracing::info!(rule = %rule, until = %until, "rule snoozed");
            }
            NudgeAction::OpenSettings(rule) => self.desktop.open_settings(&rule),
        }
    }

    fn save(&self) {
        let Some(path) = &self.options.memory_path else {
            return;
        };
        if let Err(err) = self.memory.save(path) {
            tracing::warn!(error = %err, "nudge memory not saved; reminders may repeat early");
        }
    }
}

/// One pass, then return: `--once`. Every failure is an error here, so a
/// test (or a person trying it) sees it.
pub async fn run_once(options: NudgeOptions) -> anyhow::Result<PassOutcome> {
    let mut helper = Helper::new(options, Desktop::new(None));
    let outcome = helper.pass().await?;
    if !outcome.failed.is_empty() {
        anyhow::bail!("{}", outcome.failed.join("; "));
    }
    Ok(outcome)
}

/// Passes every [`POLL_INTERVAL`] and acts on buttons, until `shutdown`
/// resolves. Nothing that goes wrong stops it: a missing daemon is waited
/// for quietly (debug), other problems are logged when they first appear.
pub async fn run_loop(options: NudgeOptions, shutdown: impl Future<Output = ()>) {
    let (actions_tx, mut actions_rx) = mpsc::unbounded_channel();
    let mut helper = Helper::new(options, Desktop::new(Some(actions_tx)));
    let mut ticks = tokio::time::interval(POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_problem: Option<String> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(action) = actions_rx.recv() => helper.act(action),
            _ = ticks.tick() => {
                let problem = match helper.pass().await {
                    Ok(outcome) if outcome.failed.is_empty() => None,
                    Ok(outcome) => Some(outcome.failed.join("; ")),
                    Err(err @ (StatusError::NotRunning { .. } | StatusError::NotListening { .. })) => {
                        tracing::debug!(error = %err, "waiting for the agent");
                        None
                    }
                    Err(err) => Some(err.to_string()),
                };
                // Said once, not every minute; said again if it changes.
                if problem.is_some() && problem != last_problem {
                    let problem = problem.as_deref().unwrap_or_default();
                    tracing::warn!(problem = %problem, "nudge pass incomplete; retrying every minute");
                }
                last_problem = problem;
            }
        }
    }
}
