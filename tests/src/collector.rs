//! A real `palisade-collector serve` process for tests: started on
//! `127.0.0.1:0` with a self-signed certificate in a temporary state
//! directory, reached over real HTTPS, stopped with SIGTERM or killed with
//! SIGKILL.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::{Finished, binary, run};

/// How long a collector may take to start listening: migrations on a fresh
/// SQLite file take milliseconds, PostgreSQL's a second; 30 s only ever
/// matters when something is broken, and then the test fails with the log.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A running collector.
#[derive(Debug)]
pub struct RunningCollector {
    child: Child,
    /// `https://127.0.0.1:PORT`
    pub url: String,
    pub state_dir: PathBuf,
    pub database_url: String,
    log: Arc<Mutex<String>>,
}

impl RunningCollector {
    /// Starts a collector on `state_dir` with `database_url` (SQLite in the
    /// state directory when `None`), and waits until it listens.
    pub fn start(state_dir: &Path, database_url: Option<&str>) -> Self {
        Self::start_on(state_dir, database_url, "127.0.0.1:0")
    }

    /// Like [`Self::start`], on a given address (to come back on the same
    /// port after a restart).
    pub fn start_on(state_dir: &Path, database_url: Option<&str>, listen: &str) -> Self {
        Self::spawn(state_dir, database_url, listen, "info")
    }

    /// Like [`Self::start`], logging with `log_filter` (a `PALISADE_LOG`
    /// filter such as `info,palisade_collector::ingest=debug`).
    pub fn start_logging(state_dir: &Path, database_url: Option<&str>, log_filter: &str) -> Self {
        Self::spawn(state_dir, database_url, "127.0.0.1:0", log_filter)
    }

    fn spawn(state_dir: &Path, database_url: Option<&str>, listen: &str, log_filter: &str) -> Self {
        let database_url = database_url
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sqlite://{}", state_dir.join("collector.db").display()));
        let mut command = Command::new(binary("palisade-collector"));
        command
            .args([
                "serve",
                "--listen",
                listen,
                "--self-signed-tls",
                "--state-dir",
            ])
            .arg(state_dir)
            .args(["--database-url", &database_url])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("PALISADE_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start the collector: {err}"));
        let stderr = child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("no stderr pipe"));
        let log = Arc::new(Mutex::new(String::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let log_writer = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("palisade-collector listening on ") {
                    let _ = url_tx.send(url.trim().to_owned());
                }
                if let Ok(mut log) = log_writer.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let url = match url_rx.recv_timeout(START_DEADLINE) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                panic!("the collector did not start listening\n--- log ---\n{log}");
            }
        };
        Self {
            child,
            url,
            state_dir: state_dir.to_owned(),
            database_url,
            log,
        }
    }

    /// The address it listens on, `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("https://")
    }

    /// The process id of the collector, to read its CPU time from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The collector's log so far, for assertion messages.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// An HTTPS client that trusts this collector's self-signed certificate
    /// and nothing else.
    pub fn client(&self) -> reqwest::Client {
        client_trusting(&self.state_dir)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|err| panic!("cannot build the HTTPS client: {err}"))
    }

    /// Runs a collector subcommand against the same state and database.
    pub fn cli(&self, args: &[&str]) -> Finished {
        let mut full: Vec<&str> = args.to_vec();
        let state_dir = self.state_dir.display().to_string();
        full.extend([
            "--state-dir",
            &state_dir,
            "--database-url",
            &self.database_url,
        ]);
        run(&binary("palisade-collector"), &full, &[])
    }

    /// Creates an enrollment secret and returns its text.
    pub fn create_secret(&self, extra: &[&str]) -> String {
        let mut args = vec!["secret", "create"];
        args.extend_from_slice(extra);
        let finished = self.cli(&args);
        assert_eq!(finished.exit_code, Some(0), "{}", finished.dump());
        finished.stdout.trim().to_owned()
    }

    /// The detail of the collector's one device (`GET /api/v1/devices/{id}`),
    /// asserting that exactly one is listed; read with a viewer token made
    /// for it.
    pub fn only_device(&self) -> serde_json::Value {
        let made = self.cli(&["token", "create", "--role", "viewer", "--label", "test"]);
        assert_eq!(made.exit_code, Some(0), "{}", made.dump());
        let token = made.stdout.trim().to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("no runtime: {err}"));
        runtime.block_on(async {
            let client = self.client();
            let get = |path: String| {
                let request = client
                    .get(format!("{}{path}", self.url))
                    .bearer_auth(&token);
                async move {
                    let response = request
                        .send()
                        .await
                        .unwrap_or_else(|err| panic!("GET {path}: {err}"));
                    assert!(
                        response.status().is_success(),
                        "GET {path}: {}",
                        response.status()
                    );
                    response
                        .json::<serde_json::Value>()
                        .await
                        .unwrap_or_else(|err| panic!("GET {path}: {err}"))
                }
            };
            let page = get("/api/v1/devices".to_owned()).await;
            let listed = page["devices"].as_array().map(Vec::len);
            assert_eq!(listed, Some(1), "not exactly one device: {page:#}");
            let id = page["devices"][0]["device_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no device listed: {page:#}"))
                .to_owned();
            get(format!("/api/v1/devices/{id}")).await
        })
    }

    /// The CA pin `palisade-collector installers` prints: that of the last
    /// certificate of the chain this collector serves.
    pub fn served_pin(&self) -> palisade_shared::pin::CaPin {
        let path = self.state_dir.join("tls/cert.pem");
        let pem = std::fs::read(&path)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
        palisade_collector::installers::pin_of_last_certificate(&pem)
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = run(Path::new("/bin/kill"), &["-TERM", &pid], &[]);
        self.child.wait().ok().and_then(|status| status.code())
    }
}

impl Drop for RunningCollector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTPS client builder that trusts the self-signed certificate of the
/// collector whose state directory is `state_dir` (`tls/cert.pem`), and no
/// other root.
pub fn client_trusting(state_dir: &Path) -> reqwest::ClientBuilder {
    crate::install_crypto_provider();
    let pem = std::fs::read(state_dir.join("tls/cert.pem"))
        .unwrap_or_else(|err| panic!("no self-signed certificate: {err}"));
    let certificate =
        reqwest::Certificate::from_pem(&pem).unwrap_or_else(|err| panic!("bad certificate: {err}"));
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(certificate)
}

/// The value of the first hidden `csrf` field in a dashboard page.
pub fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        + marker.len();
    let end = html[start..]
        .find('"')
        .map_or(html.len(), |offset| start + offset);
    html[start..end].to_owned()
}
