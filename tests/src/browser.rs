//! Harness for the dashboard: a real headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`), dashboard users
//! made with `palisade-collector user create`, and a logged-in HTTP client
//! for requests a browser would make (the CSV export, the benchmark).
//!
//! [`Browser::start`] runs `chromedriver` on a free port of 127.0.0.1 in its
//! own process group and opens one session; dropping the [`Browser`] kills
//! that group (chromedriver and every Chromium process it started). The
//! browser profile lives in a temporary directory. Screenshots go to
//! `target/test-artifacts/<suite>/`.
//!
//! It only ever connects to 127.0.0.1: chromedriver, and the collector under
//! test, whose self-signed certificate the session accepts.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use fantoccini::{Client, ClientBuilder, Locator};

use crate::{Finished, binary};

/// How long chromedriver may take to listen: it starts in well under a
/// second here; 30 s only ever matters when something is broken.
const DRIVER_START_DEADLINE: Duration = Duration::from_secs(30);

/// How long a page element may take to appear. A dashboard page renders
/// in milliseconds; Chromium's first navigation takes a second or two on a
/// loaded two-core machine.
pub const ELEMENT_DEADLINE: Duration = Duration::from_secs(20);

/// The Chromium command-line flags of every session: headless, no sandbox
/// (the tests run as root), and nothing that reaches the network by itself
/// (test-environments.md, "Browser").
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1280,900",
];

/// A WebDriver session on a headless Chromium.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// chromedriver's log, for failure messages.
    driver_log: PathBuf,
    _profile: tempfile::TempDir,
    artifacts: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; screenshots go
    /// to `target/test-artifacts/<suite>/`.
    pub async fn start(suite: &str) -> anyhow::Result<Self> {
        let chromedriver = find_program("chromedriver", &["/usr/bin/chromedriver"])?;
        let chromium = find_program("chromium", &["/usr/bin/chromium"])?;
        let profile = tempfile::tempdir().context("cannot make a browser profile directory")?;
        let driver_log = profile.path().join("chromedriver.log");
        let port = free_port()?;
        let mut command = Command::new(&chromedriver);
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", driver_log.display()))
            .arg("--allowed-ips=127.0.0.1")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", profile.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, so that Drop can end chromedriver and
            // every browser process under it by the group's id.
            .process_group(0);
        let mut driver = command
            .spawn()
            .with_context(|| format!("cannot start {}", chromedriver.display()))?;
        let stdout = driver.stdout.take().context("no stdout pipe")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("started successfully") {
                    let _ = ready_tx.send(());
                }
            }
        });
        if ready_rx.recv_timeout(DRIVER_START_DEADLINE).is_err() {
            kill_group(&mut driver);
            let log = std::fs::read_to_string(&driver_log).unwrap_or_default();
            bail!("chromedriver did not start on port {port}\n--- log ---\n{log}");
        }

        let user_data_dir = profile.path().join("chromium");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--user-data-dir={}", user_data_dir.display()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        // The collector under test has a self-signed certificate.
        capabilities.insert("acceptInsecureCerts".into(), true.into());
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let connected =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
        let client = match connected {
            Ok(client) => client,
            Err(err) => {
                kill_group(&mut driver);
                let log = std::fs::read_to_string(&driver_log).unwrap_or_default();
                bail!("cannot open a WebDriver session: {err}\n--- chromedriver log ---\n{log}");
            }
        };
        let artifacts = artifacts_dir(suite);
        std::fs::create_dir_all(&artifacts)
            .with_context(|| format!("cannot make {}", artifacts.display()))?;
        Ok(Self {
            client,
            driver,
            driver_log,
            _profile: profile,
            artifacts,
        })
    }

    /// Opens `url` and waits for `css` to be on the page.
    pub async fn open(
        &self,
        url: &str,
        css: &str,
    ) -> anyhow::Result<fantoccini::elements::Element> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("cannot open {url}"))?;
        self.element(css).await
    }

    /// Waits (up to [`ELEMENT_DEADLINE`]) for an element matching `css`.
    pub async fn element(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        match self
            .client
            .wait()
            .at_most(ELEMENT_DEADLINE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => Ok(element),
            Err(err) => {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                let source = self.client.source().await.unwrap_or_default();
                bail!(
                    "no element {css} on {url} within {ELEMENT_DEADLINE:?}: {err}\n--- page ---\n{source}"
                )
            }
        }
    }

    /// Every element matching `css` on the current page (no waiting).
    pub async fn all(&self, css: &str) -> anyhow::Result<Vec<fantoccini::elements::Element>> {
        Ok(self.client.find_all(Locator::Css(css)).await?)
    }

    /// The text of the element matching `css`, once it is there.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.element(css).await?.text().await?)
    }

    /// Marks the current document so [`Self::wait_for_new_page`] can tell
    /// when the browser has replaced it.
    pub async fn mark_page(&self) -> anyhow::Result<()> {
        self.client
            .execute(
                "document.documentElement.setAttribute('data-test-old-page', '1')",
                Vec::new(),
            )
            .await?;
        Ok(())
    }

    /// Waits until a document without the [`Self::mark_page`] mark holds
    /// `css`: a navigation started by a click has finished.
    pub async fn wait_for_new_page(
        &self,
        css: &str,
    ) -> anyhow::Result<fantoccini::elements::Element> {
        self.element(&format!("html:not([data-test-old-page]) {css}"))
            .await
    }

    /// Saves a PNG of the viewport as `<name>.png` in the artifacts
    /// directory and returns its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self
            .client
            .screenshot()
            .await
            .context("screenshot failed")?;
        let path = self.artifacts.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }

    /// The value of cookie `name` in the session, for requests made outside
    /// the browser.
    pub async fn cookie(&self, name: &str) -> anyhow::Result<Option<String>> {
        let cookies = self.client.get_all_cookies().await?;
        Ok(cookies
            .into_iter()
            .find(|cookie| cookie.name() == name)
            .map(|cookie| cookie.value().to_owned()))
    }

    /// chromedriver's log so far.
    pub fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.driver_log).unwrap_or_default()
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let closed = self.client.clone().close().await;
        kill_group(&mut self.driver);
        closed.context("cannot end the WebDriver session")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// SIGKILL to chromedriver's process group (chromedriver and the browser
/// processes it started), then reap chromedriver.
fn kill_group(driver: &mut Child) {
    if driver.try_wait().ok().flatten().is_none() {
        let group = format!("-{}", driver.id());
        let _ = Command::new("/bin/kill")
            .args(["-KILL", "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = driver.kill();
    let _ = driver.wait();
}

/// `name` on PATH, else the first of `fallbacks` that exists.
fn find_program(name: &str, fallbacks: &[&str]) -> anyhow::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name));
    on_path
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|candidate| candidate.is_file())
        .with_context(|| {
            format!(
                "{name} is not installed: apt-get install chromium chromium-driver (tests/run does)"
            )
        })
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `target/test-artifacts/<suite>`: in `CARGO_TARGET_DIR` when set, else
/// the target directory this executable was built into.
pub fn artifacts_dir(suite: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // target/<profile>/deps/<test> or target/<profile>/<bin>
            let exe = std::env::current_exe().ok()?;
            exe.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| crate::repo_root().join("target"));
    target.join("test-artifacts").join(suite)
}

// ---------------------------------------------------------------------------
// Dashboard users and logins without a browser.

/// Runs `palisade-collector user create` (the binary at `collector`) for
/// `username` with `role` against the given store, with `password` on
/// standard input, as an operator would pipe it.
pub fn create_user(
    collector: &Path,
    store_args: &[&str],
    username: &str,
    role: &str,
    password: &str,
) -> Finished {
    let mut args = vec!["user", "create", "--username", username, "--role", role];
    args.extend_from_slice(store_args);
    let command_line = std::iter::once(collector.display().to_string())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let spawned = Command::new(collector)
        .args(&args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let output = spawned.and_then(|mut child| {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(format!("{password}\n").as_bytes())?;
        }
        child.wait_with_output()
    });
    match output {
        Ok(output) => Finished {
            command_line,
            exit_code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        },
        Err(err) => Finished {
            command_line,
            exit_code: None,
            stdout: String::new(),
            stderr: format!("cannot run: {err}"),
        },
    }
}

/// [`create_user`] with the test build's collector against a running
/// collector's store; panics with the dump when it fails.
pub fn create_user_for(
    collector: &crate::collector::RunningCollector,
    username: &str,
    role: &str,
    password: &str,
) {
    let state_dir = collector.state_dir.display().to_string();
    let store = [
        "--state-dir",
        state_dir.as_str(),
        "--database-url",
        collector.database_url.as_str(),
    ];
    let made = create_user(
        &binary("palisade-collector"),
        &store,
        username,
        role,
        password,
    );
    assert_eq!(made.exit_code, Some(0), "{}", made.dump());
}

/// A dashboard session held by an HTTP client: requests carry the session
/// cookie; redirects are not followed, so a test sees them.
#[derive(Debug, Clone)]
pub struct DashboardSession {
    pub http: reqwest::Client,
    pub base_url: String,
    /// `palisade_session=…`, ready for a `Cookie` header.
    pub cookie: String,
}

impl DashboardSession {
    /// A client for `base_url` trusting `ca_pem`, using an existing session
    /// cookie value (for example one read from the browser).
    pub fn with_cookie(base_url: &str, ca_pem: &[u8], session: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: dashboard_client(ca_pem)?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            cookie: format!("palisade_session={session}"),
        })
    }

    /// Logs in through the form as a browser would: GET /login for the
    /// double-submit CSRF cookie and field, POST /login, keep the session
    /// cookie.
    pub async fn login(
        base_url: &str,
        ca_pem: &[u8],
        username: &str,
        password: &str,
    ) -> anyhow::Result<Self> {
        let http = dashboard_client(ca_pem)?;
        let base_url = base_url.trim_end_matches('/').to_owned();
        let page = http
            .get(format!("{base_url}/login"))
            .send()
            .await
            .context("GET /login failed")?;
        let login_cookies = cookie_pairs(page.headers());
        let html = page.text().await?;
        let csrf = hidden_field(&html, "csrf").context("the login page has no csrf field")?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("username", username)
            .append_pair("password", password)
            .append_pair("csrf", &csrf)
            .finish();
        let answer = http
            .post(format!("{base_url}/login"))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::COOKIE, login_cookies.join("; "))
            .body(body)
            .send()
            .await
            .context("POST /login failed")?;
        let status = answer.status();
        let session = cookie_pairs(answer.headers())
            .into_iter()
            .find(|pair| pair.starts_with("palisade_session="));
        match session {
            Some(cookie) if status.is_redirection() => Ok(Self {
                http,
                base_url,
                cookie,
            }),
            _ => {
                let text = answer.text().await.unwrap_or_default();
                bail!("login as {username} failed: {status}\n{text}")
            }
        }
    }

    /// GET `path` with the session cookie.
    pub async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        self.http
            .get(format!("{}{path}", self.base_url))
            .header(reqwest::header::COOKIE, &self.cookie)
            .send()
            .await
            .with_context(|| format!("GET {path} failed"))
    }
}

fn dashboard_client(ca_pem: &[u8]) -> anyhow::Result<reqwest::Client> {
    crate::install_crypto_provider();
    let certificate =
        reqwest::Certificate::from_pem(ca_pem).context("the CA file is not a PEM certificate")?;
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(certificate)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTPS client")
}

/// `name=value` of every `Set-Cookie` in `headers`.
fn cookie_pairs(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .map(|pair| pair.trim().to_owned())
        .collect()
}

/// The `value` of the `<input … name="NAME" …>` in `html` (attribute
/// values as maud writes them: double-quoted, escaped).
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\"");
    let at = html.find(&needle)?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let value_at = tag.find("value=\"")? + "value=\"".len();
    let value_end = value_at + tag[value_at..].find('"')?;
    Some(tag[value_at..value_end].replace("&amp;", "&"))
}

/// The milliseconds of `Server-Timing: app;dur=<ms>`.
pub fn server_timing_ms(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    let value = headers.get("server-timing")?.to_str().ok()?;
    value
        .split(',')
        .map(str::trim)
        .find(|metric| metric.starts_with("app"))?
        .split(';')
        .find_map(|part| part.trim().strip_prefix("dur="))?
        .parse()
        .ok()
}
