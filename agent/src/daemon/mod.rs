//! `palisade-agent run`: the background daemon.
//!
//! At start it loads its identity, opens the spool (repairing what a crash
//! left), and enrolls if it has not (secret from the config or
//! `PALISADE_ENROLL_SECRET`). Then, every `interval_seconds`, it fetches the
//! policy (ETag, verified against the pinned key), runs a check cycle that
//! spools a signed report, and wakes the sender, which delivers the spool in
//! order with backoff. SIGTERM or SIGINT stop it after the write in progress.
//!
//! Not yet here (later steps of the daemon issue): the status socket, config
//! reload, and the immediate cycle on file changes and USB uevents.

pub mod cycle;
pub mod enroll;
pub mod http;
pub mod policy;
pub mod sender;

use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use chrono::Utc;
use palisade_shared::DeviceId;
use tokio::sync::{Notify, mpsc, watch};

use crate::config::{AgentConfig, CollectorUrl, EnrollSecret};
use crate::host::Host;
use crate::identity::{Enrollment, Identity, KeyStore};
use crate::spool::Spool;
use crate::status::{self, AgentStatus, ChangeRequest, StatusBoard};

/// The environment variable a silent installer may set instead of
/// `enroll_secret` in the config file.
pub const ENROLL_SECRET_ENV: &str = "PALISADE_ENROLL_SECRET";

/// Runs the daemon until `shutdown` resolves.
pub async fn run(config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    crate::durable::create_dir_private(&config.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            config.state_dir.display()
        )
    })?;
    crate::durable::remove_stale_temp_files(&config.state_dir)
        .with_context(|| format!("cannot clean {}", config.state_dir.display()))?;
    let identity = Identity::load_or_create(KeyStore::for_this_os(&config.state_dir))?;
    tracing::info!(key_id = %identity.key_id(), store = %identity.store, "device identity ready");

    let spool =
        Spool::open(&config.spool_dir(), config.spool_limits()).context("cannot open the spool")?;
    if !spool.recovery().is_clean() {
        tracing::warn!(recovery = ?spool.recovery(), "repaired the spool after an interrupted run");
    }
    let board = StatusBoard::new(AgentStatus::starting(&identity, Utc::now()));
    board.set_spool(&spool);
    let spool = Arc::new(Mutex::new(spool));
    let client = http::client(&config)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    // Capacity 1: a request arriving while one is queued asks for the same
    // cycle, and the status server answers it "accepted" without queueing.
    let (change_tx, mut change_rx) = mpsc::channel::<ChangeRequest>(1);
    let status_task = serve_status(&config, &board, change_tx, stop_rx.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    let enrollment = tokio::select! {
        enrollment = ensure_enrolled(&config, &client, &identity) => enrollment?,
        () = &mut shutdown => {
            let _ = stop_tx.send(true);
            if let Some(task) = status_task {
                let _ = task.await;
            }
            return Ok(());
        }
    };
    let collector = CollectorUrl::parse(&enrollment.collector_url)
        .map_err(|err| anyhow::anyhow!("enrollment record: {err}"))?;
    let pinned = enrollment
        .policy_verifying_key()
        .map_err(|err| anyhow::anyhow!("enrollment record: {err}"))?;
    let device_id: DeviceId = enrollment.device_id.clone();
    board.set_enrollment(&device_id, collector.as_str());

    // The sender runs beside the cycles and is woken after each one.
    let wake = Arc::new(Notify::new());
    let sender = sender::Sender::new(
        client.clone(),
        enroll::endpoint(&collector, "api/v1/reports")?,
        config.backoff_max(),
        config.backlog_reports_per_second,
        board.clone(),
    );
    let sender_task = {
        let (spool, wake, mut stop) = (Arc::clone(&spool), Arc::clone(&wake), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                sender.drain(&spool, &mut stop).await;
                if *stop.borrow() {
                    return;
                }
                tokio::select! {
                    () = wake.notified() => {}
                    _ = stop.changed() => return,
                }
            }
        })
    };

    let host = Host::system();
    let mut current = policy::load_last_good(&config.state_dir, Some(&pinned));
    tracing::info!(policy = %current.policy.id, version = current.policy.version, source = current.source, "policy loaded");
    board.set_policy(&current);
    let mut ticker = tokio::time::interval(config.interval());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Some(ChangeRequest::CheckNow) = change_rx.recv() => {
                tracing::info!("check cycle requested over the status socket");
                // The next periodic cycle is a full interval after this one.
                ticker.reset();
            }
            () = &mut shutdown => break,
        }
        let mut events = Vec::new();
        match policy::fetch(&client, &collector, &pinned, &current, &config.state_dir).await {
            Ok(policy::Fetched::Unchanged) => {}
            Ok(policy::Fetched::Updated(new)) => {
                board.set_policy(&new);
                current = new;
            }
            Ok(policy::Fetched::Rejected(event)) => events.push(event),
            Err(err) => {
                tracing::warn!(error = %err, "cannot fetch the policy; keeping the one in force")
            }
        }
        let outcome = {
            let (host, policy, spool, device_id) = (
                host.clone(),
                current.policy.clone(),
                Arc::clone(&spool),
                device_id.clone(),
            );
            let identity_key = identity.key.clone();
            let store = identity.store.clone();
            let board = board.clone();
            tokio::task::spawn_blocking(move || {
                let identity = Identity {
                    key: identity_key,
                    store,
                };
                let outcome =
                    cycle::run_cycle(&host, &policy, &identity, &device_id, &spool, events);
                if let Ok(spool) = spool.lock() {
                    board.set_spool(&spool);
                }
                outcome
            })
            .await
        };
        match outcome {
            Ok(Ok(outcome)) => {
                board.set_cycle(Utc::now(), outcome.results.clone());
                tracing::info!(sequence = outcome.sequence, failing = ?outcome.failing, "check cycle spooled a report");
                wake.notify_one();
            }
            Ok(Err(err)) => tracing::error!(error = %format!("{err:#}"), "check cycle failed"),
            Err(err) => tracing::error!(error = %err, "check cycle task failed"),
        }
    }
    tracing::info!("stopping: the spool keeps whatever is not yet delivered");
    let _ = stop_tx.send(true);
    let _ = sender_task.await;
    if let Some(task) = status_task {
        let _ = task.await;
    }
    Ok(())
}

/// Starts the status socket. A socket that cannot be bound is logged, not
/// fatal: status is for people and the nudge helper, and checks and reports
/// must go on without it.
fn serve_status(
    config: &AgentConfig,
    board: &StatusBoard,
    requests: mpsc::Sender<ChangeRequest>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    match status::StatusListener::bind(&config.socket_path) {
        Ok(listener) => {
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            Some(tokio::spawn(listener.serve(
                board.subscribe(),
                requests,
                status::ServeOptions::default(),
                stopped,
            )))
        }
        Err(err) => {
            tracing::error!(
                socket = %config.socket_path.display(),
                error = %sender::error_chain(&err),
                "cannot serve status; running without the status socket"
            );
            None
        }
    }
}

/// Loads the enrollment record, or enrolls now with the configured secret.
async fn ensure_enrolled(
    config: &AgentConfig,
    client: &reqwest::Client,
    identity: &Identity,
) -> anyhow::Result<Enrollment> {
    if let Some(enrollment) = Enrollment::load(&config.state_dir)? {
        if enrollment.is_for(identity) {
            return Ok(enrollment);
        }
        tracing::warn!("the enrollment record belongs to another key; enrolling again");
    }
    let secret = match (&config.enroll_secret, std::env::var(ENROLL_SECRET_ENV)) {
        (Some(secret), _) => secret.clone(),
        (None, Ok(text)) if !text.is_empty() => EnrollSecret::new(text),
        _ => bail!(
            "this device is not enrolled: run `palisade-agent enroll --collector URL --secret SECRET`, \
             or set enroll_secret in the config or {ENROLL_SECRET_ENV}"
        ),
    };
    let Some(collector) = &config.collector_url else {
        bail!("this device is not enrolled and collector_url is not set in the config");
    };
    let mut failures = 0;
    loop {
        match enroll::enroll(client, collector, &secret, identity).await {
            Ok(enrollment) => {
                enrollment.save(&config.state_dir)?;
                tracing::info!(device = %enrollment.device_id, "enrolled");
                return Ok(enrollment);
            }
            Err(err) => {
                let delay = sender::backoff(failures, config.backoff_max());
                failures += 1;
                tracing::warn!(error = %format!("{err:#}"), retry_in_s = delay.as_secs(), "enrollment failed; will retry");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
