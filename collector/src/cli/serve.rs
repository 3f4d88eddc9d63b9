//! `palisade-collector serve`: open the store, make sure a signed policy is
//! current, start the retention task and the HTTPS server, stop on a signal
//! after finishing the work in progress.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;

use super::installers::{pin_of_file, served_certificate};
use super::{BASELINE_POLICY, Creating, open_store, redact_url};
use crate::app::{AppState, Limits};
use crate::config::{CollectorConfig, TlsSetting};
use crate::ingest::batcher::Batcher;
use crate::server::{self, Transport};
use crate::state;
use crate::store::Store;

pub(super) async fn serve(config: CollectorConfig) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    // The files the operator named are read and checked before the store is
    // opened: a mistake in one must not leave a new database, state
    // directory or signing key behind it.
    let configured_policy = match &config.policy_file {
        Some(path) => Some(palisade_shared::Policy::load_file(path)?.0),
        None => None,
    };
    let transport = match &config.tls {
        TlsSetting::Files {
            cert_file,
            key_file,
        } => Transport::Tls(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert_file, key_file)
                .await
                .with_context(|| {
                    format!(
                        "cannot load TLS certificate {} and key {}",
                        cert_file.display(),
                        key_file.display()
                    )
                })?,
        ),
        TlsSetting::SelfSigned => {
            // The demo's certificate lives in the state directory, which
            // must have its owner-only mode before anything is put in it.
            state::ensure_state_dir(&config.state_dir)?;
            let (cert, key) = state::self_signed_tls(&config.state_dir)?;
            Transport::Tls(axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await?)
        }
        TlsSetting::None => Transport::Plain,
    };
    let store = open_store(&config, Creating::OnFirstServe).await?;
    let policy_key = state::load_or_create_policy_key(&config.state_dir)?;
    ensure_signed_policy(&store, &policy_key, configured_policy).await?;

    let ca_pin = served_certificate(&config).and_then(|path| match pin_of_file(&path) {
        Ok(pin) => Some(pin),
        Err(err) => {
            tracing::warn!(error = %err, "no CA pin for the Add devices page");
            None
        }
    });
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    let scheme = if matches!(transport, Transport::Plain) {
        "http"
    } else {
        "https"
    };

    let metrics = Arc::new(crate::metrics::Metrics::default());
    let write_health = Arc::new(crate::ingest::health::WriteHealth::new(
        metrics.store_write_failures(),
    ));
    let (batcher, writer) = Batcher::start(store.clone(), write_health.clone());
    let retention = spawn_retention(store.clone(), config.retention_days);
    let app_state = AppState {
        store,
        batcher,
        write_health,
        policy_key: Arc::new(policy_key),
        metrics,
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            clock_skew_seconds: config.clock_skew_seconds,
        },
        enroll_guard: Arc::default(),
        token_guard: Arc::default(),
        web: crate::web::WebSettings {
            // Plain HTTP is allowed on loopback only (config.rs); there a
            // browser would drop a `Secure` cookie.
            secure_cookies: !matches!(transport, Transport::Plain),
            unknown_users: Arc::default(),
            stale_after: chrono::TimeDelta::hours(i64::from(config.stale_after_hours)),
            public_url: config.public_url.clone(),
            ca_pin,
        },
    };
    tracing::info!(%address, database = %redact_url(&config.database_url), "collector listening");
    // A line for people and scripts: the URL to reach this collector.
    eprintln!("palisade-collector listening on {scheme}://{address}");
    server::serve(listener, app_state, transport, shutdown).await?;
    retention.abort();
    // The router and its batcher handles are gone; the writer drains what is
    // queued and exits.
    writer.await.context("the report writer task failed")?;
    tracing::info!("collector stopped");
    Ok(())
}

/// Makes sure the current policy is signed by the current key: on first start
/// (no policy yet) it stores the configured or baseline policy; if the key
/// was replaced, it re-signs the current policy.
async fn ensure_signed_policy(
    store: &Store,
    key: &ed25519_dalek::SigningKey,
    configured_policy: Option<String>,
) -> anyhow::Result<()> {
    let current = store.current_policy().await?;
    let text = match current {
        Some(record) => {
            let signed_by_current =
                palisade_shared::Envelope::from_json(&record.envelope, usize::MAX)
                    .ok()
                    .is_some_and(|envelope| {
                        let public = key.verifying_key();
                        let id = palisade_shared::KeyId::of(&public);
                        envelope
                            .verify(palisade_shared::envelope::POLICY_PAYLOAD_TYPE, |k| {
                                (k == &id).then_some(public)
                            })
                            .is_ok()
                    });
            if signed_by_current {
                return Ok(());
            }
            tracing::warn!("the stored policy is not signed by the current key; re-signing it");
            record.text
        }
        None => configured_policy.unwrap_or_else(|| BASELINE_POLICY.to_owned()),
    };
    server::policy::set_policy(store, key, &text, "collector").await?;
    Ok(())
}

fn spawn_retention(store: Store, retention_days: u32) -> tokio::task::JoinHandle<()> {
    // Hourly: purging is cheap and an hour of extra retention is immaterial.
    const PURGE_EVERY: Duration = Duration::from_secs(3600);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(PURGE_EVERY);
        loop {
            ticker.tick().await;
            let cutoff = Utc::now() - chrono::Duration::days(i64::from(retention_days));
            match store.purge_reports_before(cutoff).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, retention_days, "purged old raw reports"),
                Err(err) => tracing::error!(error = %err, "purging old reports failed"),
            }
        }
    })
}

/// Registers the SIGTERM and SIGINT handlers now, before anything is
/// announced, so a signal that arrives early is not met by the default action
/// (which would kill the process in the middle of a write), and returns the
/// future that resolves at the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("shutting down: finishing the work in progress");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: finishing the work in progress");
        })
    }
}
