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
use palisade_shared::DeviceId;
use tokio::sync::{Notify, watch};

use crate::config::{AgentConfig, CollectorUrl, EnrollSecret};
use crate::host::Host;
use crate::identity::{Enrollment, Identity, KeyStore};
use crate::spool::Spool;

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
    let spool = Arc::new(Mutex::new(spool));
    let client = http::client(&config)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let enrollment = tokio::select! {
        enrollment = ensure_enrolled(&config, &client, &identity) => enrollment?,
        () = &mut shutdown => return Ok(()),
    };
    let collector = CollectorUrl::parse(&enrollment.collector_url)
        .map_err(|err| anyhow::anyhow!("enrollment record: {err}"))?;
    let pinned = enrollment
        .policy_verifying_key()
        .map_err(|err| anyhow::anyhow!("enrollment record: {err}"))?;
    let device_id: DeviceId = enrollment.device_id.clone();

    // The sender runs beside the cycles and is woken after each one.
    let wake = Arc::new(Notify::new());
    let sender = sender::Sender::new(
        client.clone(),
        enroll::endpoint(&collector, "api/v1/reports")?,
        config.backoff_max(),
        config.backlog_reports_per_second,
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
    let mut ticker = tokio::time::interval(config.interval());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut shutdown => break,
        }
        let mut events = Vec::new();
        match policy::fetch(&client, &collector, &pinned, &current, &config.state_dir).await {
            Ok(policy::Fetched::Unchanged) => {}
            Ok(policy::Fetched::Updated(new)) => current = new,
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
            tokio::task::spawn_blocking(move || {
                let identity = Identity {
                    key: identity_key,
                    store,
                };
                cycle::run_cycle(&host, &policy, &identity, &device_id, &spool, events)
            })
            .await
        };
        match outcome {
            Ok(Ok(outcome)) => {
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
    Ok(())
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
