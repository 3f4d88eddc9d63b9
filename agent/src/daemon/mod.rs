//! `palisade-agent run`: the background daemon.
//!
//! At start it loads its identity, opens the spool (repairing what a crash
//! left), and enrolls if it has not (secret from the config,
//! `PALISADE_ENROLL_SECRET`, or where a silent installer left it: see
//! [`installer`], which also deletes it once enrolled). Then, every `interval_seconds`, it fetches the
//! policy (ETag, verified against the pinned key), runs a check cycle that
//! spools a signed report, and wakes the sender, which delivers the spool in
//! order with backoff. SIGTERM or SIGINT stop it after the write in progress.
//!
//! It also checks at once, after a short debounce, when something the rules
//! read changes: a watched file ([`triggers::FileWatch`], paths from each
//! rule's `watched_paths`) or a USB or block device (kernel uevents). When
//! the config file changes it is read again: a bad new file is logged with
//! every problem and the old config stays; good changes apply at once where
//! they can (interval, delivery settings) and the rest are named as waiting
//! for a restart. The status socket serves the latest verdicts and takes
//! `check_now` from root. Failing rules carry `first_failed_at` and, in
//! `nudge` mode, a deadline ([`deadlines`]).

pub mod cycle;
pub mod deadlines;
pub mod enroll;
pub mod http;
pub mod installer;
mod pinned_anchor;
pub mod policy;
mod reload;
pub mod sender;
pub mod triggers;

use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use chrono::Utc;
use palisade_shared::error_text::describe;
use palisade_shared::report::Event;
use palisade_shared::{DeviceId, Policy};
use tokio::sync::{Notify, mpsc, watch};

use crate::config::{AgentConfig, CollectorUrl, ConfigSource, EnrollSecret};
use crate::identity::{Enrollment, Identity, KeyStore};
use crate::spool::Spool;
use crate::status::{self, AgentStatus, ChangeRequest, StatusBoard};
use crate::sys::Host;
use cycle::Cycles;
use reload::{delivery_changed, reload};
use triggers::Trigger;

/// The environment variable a silent installer may set instead of
/// `enroll_secret` in the config file.
pub const ENROLL_SECRET_ENV: &str = "PALISADE_ENROLL_SECRET";

/// Runs the daemon until `shutdown` resolves. `source` is where `config`
/// came from, read again when the file changes; `host` is the machine the
/// rules check (a prepared tree in tests).
pub async fn run(
    config: AgentConfig,
    source: ConfigSource,
    host: Host,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut config = config;
    let (identity, spool, board) = open_state(&config)?;
    let client = http::client(&config)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    // Capacity 1: a request arriving while one is queued asks for the same
    // cycle, and the status server answers it "accepted" without queueing.
    let (change_tx, mut change_rx) = mpsc::channel::<ChangeRequest>(1);
    let status_task = serve_status(&config, &board, change_tx, stop_rx.clone());

    // Watch from the start: a change made while the device waits for its
    // collector is queued (bounded) and looked at after enrollment.
    let (trigger_tx, mut trigger_rx) = mpsc::channel::<Trigger>(triggers::CHANNEL_CAPACITY);
    let mut file_watch = start_file_watch(&host, &source, trigger_tx.clone());
    let uevent_listener = start_uevent_listener(&host, trigger_tx);

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

    // The sender runs beside the cycles and is woken after each one. A
    // reloaded config replaces it through `senders`.
    let wake = Arc::new(Notify::new());
    let reports_url = enroll::endpoint(&collector, "api/v1/reports")?;
    let delivery = Delivery {
        reports_url,
        board: board.clone(),
    };
    let (senders, sender_rx) = watch::channel(delivery.sender(&config, client.clone()));
    let sender_task = spawn_sender(
        Arc::clone(&spool),
        Arc::clone(&wake),
        stop_rx.clone(),
        sender_rx,
    );

    let mut current = policy::load_last_good(&config.state_dir, Some(&pinned));
    tracing::info!(policy = %current.policy.id, version = current.policy.version, source = current.source, "policy loaded");
    board.set_policy(&current);
    let cycles = Cycles {
        host: host.clone(),
        identity,
        device_id,
        spool: Arc::clone(&spool),
        board: board.clone(),
    };
    let mut deadlines = deadlines::Deadlines::load(&config.state_dir);
    let mut pending_events = sweep_devices(&host, &current.policy).await;
    for event in &pending_events {
        board.record_event(event.clone());
    }
    let mut ticker = tokio::time::interval(config.interval());
    loop {
        let mut events = std::mem::take(&mut pending_events);
        tokio::select! {
            _ = ticker.tick() => {}
            Some(ChangeRequest::CheckNow) = change_rx.recv() => {
                tracing::info!("check cycle requested over the status socket");
                // The next periodic cycle is a full interval after this one.
                ticker.reset();
            }
            Some(first) = trigger_rx.recv() => {
                let burst =
                    collect_burst(first, &mut trigger_rx, &host, &current.policy, &board, &mut events)
                        .await;
                if burst.contains(&Trigger::ConfigChanged) {
                    if let Some(new) = reload(&source, &config) {
                        if new.interval_seconds != config.interval_seconds {
                            ticker = tokio::time::interval_at(
                                tokio::time::Instant::now() + new.interval(),
                                new.interval(),
                            );
                        }
                        delivery.apply(&config, &new, &spool, &senders);
                        config = new;
                    }
                }
                if let Some(watch) = file_watch.as_mut() {
                    watch.refresh();
                }
                let checks_affected: Vec<&Trigger> =
                    burst.iter().filter(|t| **t != Trigger::ConfigChanged).collect();
                if checks_affected.is_empty() {
                    // Nothing to check; events waiting for a report keep
                    // waiting for the next one.
                    pending_events = events;
                    continue;
                }
                tracing::info!(trigger = ?checks_affected[0], count = checks_affected.len(), "something the rules read changed; checking now");
                ticker.reset();
            }
            () = &mut shutdown => break,
        }
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
        pending_events = cycles
            .run(&current.policy, &mut deadlines, &config.state_dir, events)
            .await;
        // Even when the report could not be written: delivering what the
        // spool holds is what frees a full disk.
        wake.notify_one();
    }
    tracing::info!("stopping: the spool keeps whatever is not yet delivered");
    let _ = stop_tx.send(true);
    drop(file_watch);
    drop(uevent_listener);
    let _ = sender_task.await;
    if let Some(task) = status_task {
        let _ = task.await;
    }
    Ok(())
}

/// Prepares the state directory and opens what lives in it: the device
/// identity, the spool (repairing what a crash left) and the status board.
fn open_state(config: &AgentConfig) -> anyhow::Result<(Identity, Arc<Mutex<Spool>>, StatusBoard)> {
    crate::state_dir::prepare(&config.state_dir).with_context(|| {
        format!(
            "cannot use the state directory {}",
            config.state_dir.display()
        )
    })?;
    crate::durable::remove_stale_temp_files(&config.state_dir)
        .with_context(|| format!("cannot clean {}", config.state_dir.display()))?;
    let identity = Identity::load_or_create(KeyStore::for_this_os(&config.state_dir))?;
    tracing::info!(key_id = %identity.key_id(), store = %identity.store, "device identity ready");

    let spool =
        Spool::open(&config.spool_dir(), config.spool_limits()).context("cannot open the spool")?;
    let board = StatusBoard::new(AgentStatus::starting(&identity, Utc::now()));
    board.set_spool(&spool);
    Ok((identity, Arc::new(Mutex::new(spool)), board))
}

/// Listens to kernel device events. One that cannot start is logged, not
/// fatal: device changes are then seen at the next interval.
fn start_uevent_listener(
    host: &Host,
    triggers: mpsc::Sender<Trigger>,
) -> Option<triggers::UeventListener> {
    let senders = if host.is_live_system() {
        triggers::UeventSenders::KernelOnly
    } else {
        triggers::UeventSenders::AnyRootProcess
    };
    match triggers::listen_uevents(triggers, senders) {
        Ok(listener) => Some(listener),
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen to device events; USB and disk changes are seen at the next interval");
            None
        }
    }
}

/// Collects the rest of a burst of triggers: they keep coming until none
/// has for [`triggers::DEBOUNCE`] (the quiet period is the point: one cycle
/// per burst). A device event is acted on as it arrives, not after the
/// burst, and the events the rules return join `events`.
async fn collect_burst(
    first: Trigger,
    trigger_rx: &mut mpsc::Receiver<Trigger>,
    host: &Host,
    policy: &Policy,
    board: &StatusBoard,
    events: &mut Vec<Event>,
) -> Vec<Trigger> {
    let mut burst: Vec<Trigger> = Vec::new();
    let mut next = Some(first);
    while let Some(trigger) = next {
        if let Some(event) = act_on_device_event(host, policy, &trigger).await {
            board.record_event(event.clone());
            events.push(event);
        }
        if !burst.contains(&trigger) {
            burst.push(trigger);
        }
        next = tokio::time::timeout(triggers::DEBOUNCE, trigger_rx.recv())
            .await
            .ok()
            .flatten();
    }
    burst
}

/// Where reports go, and what a sender is built from.
struct Delivery {
    reports_url: url::Url,
    board: StatusBoard,
}

impl Delivery {
    fn sender(&self, config: &AgentConfig, client: reqwest::Client) -> sender::Sender {
        sender::Sender::new(
            client,
            self.reports_url.clone(),
            config.backoff_max(),
            config.backlog_reports_per_second,
            self.board.clone(),
        )
    }

    /// Applies a reloaded config's spool bounds and delivery settings.
    fn apply(
        &self,
        old: &AgentConfig,
        new: &AgentConfig,
        spool: &Mutex<Spool>,
        senders: &watch::Sender<sender::Sender>,
    ) {
        if new.spool_limits() != old.spool_limits() {
            // Applied at the next append, which drops (and counts) what no
            // longer fits.
            if let Ok(mut spool) = spool.lock() {
                spool.set_limits(new.spool_limits());
            }
        }
        if delivery_changed(old, new) {
            match http::client(new) {
                Ok(client) => {
                    let _ = senders.send(self.sender(new, client));
                }
                Err(err) => {
                    tracing::error!(error = %describe(&*err), "cannot apply the new delivery settings; keeping the old ones")
                }
            }
        }
    }
}

/// Runs the sender until `stop`: drains the spool, then waits to be woken.
fn spawn_sender(
    spool: Arc<Mutex<Spool>>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    mut sender_rx: watch::Receiver<sender::Sender>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let sender = sender_rx.borrow_and_update().clone();
            // New delivery settings interrupt a drain (even one waiting out
            // a long backoff); an interrupted POST is safe, since a report
            // leaves the spool only after its 2xx and the collector
            // acknowledges a duplicate again.
            tokio::select! {
                () = sender.drain(&spool, &mut stop) => {}
                _ = sender_rx.changed() => continue,
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                () = wake.notified() => {}
                _ = sender_rx.changed() => {}
                _ = stop.changed() => return,
            }
        }
    })
}

/// Starts watching the rules' files and the config file. A watcher that
/// cannot start (inotify limits) is logged, not fatal: the interval still
/// catches every change, only later.
fn start_file_watch(
    host: &Host,
    source: &ConfigSource,
    triggers: mpsc::Sender<Trigger>,
) -> Option<triggers::FileWatch> {
    let config_file = source.path();
    // The rules' paths are Linux paths: on a live Windows or macOS they name
    // nothing (a registry change is seen at the next interval until the
    // rules watch their keys), so only the config is watched there.
    let rule_paths = if host.is_live_system() && !cfg!(target_os = "linux") {
        Vec::new()
    } else {
        crate::checks::watched_paths()
    };
    match triggers::FileWatch::start(host, &rule_paths, Some(&config_file), triggers) {
        Ok(watch) => {
            let dirs: Vec<String> = watch.watched().map(|d| d.display().to_string()).collect();
            tracing::info!(watching = ?dirs, "watching the rules' files and the config");
            Some(watch)
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch files; changes are seen at the next interval");
            None
        }
    }
}

/// Hands a kernel device event to the rules the moment it arrives (a USB
/// stick is stopped before anything can mount it, when the policy
/// enforces). The event a rule returns goes into the next report and to the
/// nudge helper.
async fn act_on_device_event(host: &Host, policy: &Policy, trigger: &Trigger) -> Option<Event> {
    let Trigger::Device(uevent) = trigger else {
        return None;
    };
    let (host, policy, event) = (host.clone(), policy.clone(), uevent.clone());
    let outcome =
        tokio::task::spawn_blocking(move || crate::checks::on_device_event(&host, &policy, &event))
            .await;
    match outcome {
        Ok(Ok(Some(event))) => {
            tracing::warn!(device = %uevent.devpath, details = ?event.details, "acted on a device the policy does not allow");
            Some(event)
        }
        Ok(Ok(None)) => None,
        Ok(Err(err)) => {
            tracing::error!(device = %uevent.devpath, error = %describe(&*err), "cannot apply the policy to a new device");
            None
        }
        Err(err) => {
            tracing::error!(error = %err, "device enforcement task failed");
            None
        }
    }
}

/// Lets the rules act on the devices already present at start (a USB stick
/// may have been plugged in while the agent was stopped).
async fn sweep_devices(host: &Host, policy: &Policy) -> Vec<Event> {
    let (host, policy) = (host.clone(), policy.clone());
    match tokio::task::spawn_blocking(move || crate::checks::sweep_devices(&host, &policy)).await {
        Ok(Ok(events)) => events,
        Ok(Err(err)) => {
            tracing::error!(error = %describe(&*err), "cannot check the devices present at start");
            Vec::new()
        }
        Err(err) => {
            tracing::error!(error = %err, "device sweep task failed");
            Vec::new()
        }
    }
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
                error = %describe(&err),
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
    // The installer's settings fill what the config and the environment
    // leave unset (installer.rs says where each system's installer puts them).
    let installer = installer::read(&config.state_dir)?;
    let secret = match (&config.enroll_secret, std::env::var(ENROLL_SECRET_ENV)) {
        (Some(secret), _) => secret.clone(),
        (None, Ok(text)) if !text.is_empty() => EnrollSecret::new(text),
        _ => match installer.enroll_secret {
            Some(secret) => secret,
            None => bail!(
                "this device is not enrolled: run `palisade-agent enroll --collector URL --secret SECRET`, \
                 or set enroll_secret in the config or {ENROLL_SECRET_ENV}"
            ),
        },
    };
    let collector = match (&config.collector_url, &installer.collector_url) {
        (Some(url), _) => url.clone(),
        (None, Some(text)) => CollectorUrl::parse(text)
            .map_err(|err| anyhow::anyhow!("the installer's collector URL {text:?}: {err}"))?,
        (None, None) => {
            bail!("this device is not enrolled and collector_url is not set in the config")
        }
    };
    let collector = &collector;
    let mut failures = 0;
    loop {
        match enroll::enroll(client, collector, &secret, identity).await {
            Ok(enrollment) => {
                enrollment.save(&config.state_dir)?;
                tracing::info!(device = %enrollment.device_id, "enrolled");
                // Enrolled: the secret has done its work and must not stay
                // where the installer left it. Failing to delete it is
                // logged, not fatal: the device is enrolled either way.
                if let Err(err) = installer::forget_secret(&config.state_dir) {
                    tracing::error!(error = %describe(&*err), "cannot delete the installer's enrollment secret");
                }
                if config.enroll_secret.is_some() {
                    tracing::warn!(
                        "enrolled: remove enroll_secret from the config file, it is no longer needed"
                    );
                }
                return Ok(enrollment);
            }
            Err(err) => {
                let delay = sender::backoff(failures, config.backoff_max());
                failures += 1;
                tracing::warn!(error = %describe(&*err), retry_in_s = delay.as_secs(), "enrollment failed; will retry");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
