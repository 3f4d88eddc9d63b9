//! Enrollment secrets end to end, on SQLite and PostgreSQL: revocation from
//! the command line and the admin API, the state each is listed with, the
//! audit entry every use of an existing secret leaves (and that no secret
//! text reaches the audit log or the log), and `palisade-collector
//! installers`, whose command lines are run through a real sh.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed assertion

use std::path::Path;

use chrono::Utc;
use palisade_tests::collector::RunningCollector;
use palisade_tests::databases::{Backend, database_for};
use palisade_tests::device::SimulatedDevice;
use palisade_tests::{Finished, run};
use reqwest::StatusCode;
use serde_json::Value;

struct Fixture {
    _dir: tempfile::TempDir,
    collector: RunningCollector,
    client: reqwest::Client,
    admin: String,
    viewer: String,
}

fn start(backend: Backend, name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let database = database_for(backend, name);
    let collector = RunningCollector::start(dir.path(), database.as_deref());
    let client = collector.client();
    let token = |role: &str| {
        let made = collector.cli(&["token", "create", "--role", role, "--label", "ops"]);
        assert_eq!(made.exit_code, Some(0), "{}", made.dump());
        made.stdout.trim().to_owned()
    };
    let (admin, viewer) = (token("admin"), token("viewer"));
    Fixture {
        _dir: dir,
        collector,
        client,
        admin,
        viewer,
    }
}

/// The id part of `pls_<id>_<random>` (or of a token).
fn id_of(secret: &str) -> &str {
    &secret[4..20]
}

impl Fixture {
    /// Enrolls a new device with `secret`: the status and the JSON body.
    async fn enroll(&self, hostname: &str, secret: &str) -> (StatusCode, Value) {
        let device = SimulatedDevice::new(hostname);
        let response = self
            .client
            .post(format!("{}/api/v1/enroll", self.collector.url))
            .header("content-type", "application/json")
            .body(device.enroll_envelope(secret, Utc::now()).to_json())
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn post(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.collector.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.collector.url))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The state the admin API lists the secret `id` with.
    async fn state_of(&self, id: &str) -> String {
        let listed = self.get("/api/v1/secrets").await;
        let secret = listed["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {listed}"))
            .clone();
        secret["state"].as_str().unwrap().to_owned()
    }

    async fn audit(&self) -> Vec<Value> {
        self.get("/api/v1/audit?limit=500").await["entries"]
            .as_array()
            .unwrap()
            .clone()
    }
}

async fn revocation_and_states(backend: Backend) {
    let f = start(backend, "secret_revoke");
    let by_api = f.collector.create_secret(&["--label", "ward 7"]);
    let by_cli = f.collector.create_secret(&[]);
    let once = f.collector.create_secret(&["--uses", "1"]);
    let brief = f.collector.create_secret(&["--expires", "1ms"]);
    assert_eq!(f.enroll("before", &by_api).await.0, StatusCode::CREATED);
    assert_eq!(f.enroll("only-one", &once).await.0, StatusCode::CREATED);

    // The admin API: viewers may not, unknown ids are 404, twice is fine.
    let path = format!("/api/v1/secrets/{}/revoke", id_of(&by_api));
    let (status, body) = f.post(&path, &f.viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(f.state_of(id_of(&by_api)).await, "active");
    let (status, first) = f.post(&path, &f.admin).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["state"], "revoked");
    assert_eq!(first["label"], "ward 7");
    assert!(first.get("secret").is_none(), "{first}");
    let (status, again) = f.post(&path, &f.admin).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["revoked_at"], first["revoked_at"]);
    let (status, body) = f
        .post("/api/v1/secrets/0123456789abcdef/revoke", &f.admin)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "no_such_secret");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("0123456789abcdef"),
        "{body}"
    );
    // A whole secret pasted as the id is not echoed back.
    let (status, body) = f
        .post(&format!("/api/v1/secrets/{by_cli}/revoke"), &f.admin)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.to_string().contains(&by_cli), "{body}");

    // The command line, the same way.
    let revoked = f.collector.cli(&["secret", "revoke", id_of(&by_cli)]);
    assert_eq!(revoked.exit_code, Some(0), "{}", revoked.dump());
    assert!(revoked.stdout.contains("revoked"), "{}", revoked.dump());
    let again = f.collector.cli(&["secret", "revoke", id_of(&by_cli)]);
    assert_eq!(again.exit_code, Some(0), "{}", again.dump());
    assert!(again.stdout.contains("already revoked"), "{}", again.dump());
    let unknown = f.collector.cli(&["secret", "revoke", "fedcba9876543210"]);
    assert_eq!(unknown.exit_code, Some(1), "{}", unknown.dump());
    assert!(
        unknown
            .stderr
            .contains("no enrollment secret \"fedcba9876543210\""),
        "{}",
        unknown.dump()
    );

    // A revoked secret is refused exactly like a wrong one.
    let (status, revoked_body) = f.enroll("after", &by_api).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong = format!("{}_wrongwrongwrong", &by_api[..20]);
    let (status, wrong_body) = f.enroll("wrong", &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(revoked_body, wrong_body);
    assert_eq!(revoked_body["error"], "bad_secret");
    assert_eq!(f.enroll("after", &by_cli).await.0, StatusCode::UNAUTHORIZED);

    // Every state, in the API and on the command line.
    for (secret, state) in [
        (&by_api, "revoked"),
        (&by_cli, "revoked"),
        (&once, "used_up"),
        (&brief, "expired"),
    ] {
        assert_eq!(f.state_of(id_of(secret)).await, state, "{secret}");
    }
    let active = f.collector.create_secret(&[]);
    assert_eq!(f.state_of(id_of(&active)).await, "active");
    let listed = f.collector.cli(&["secret", "list"]);
    for (secret, state) in [
        (&by_api, "revoked"),
        (&once, "used_up"),
        (&brief, "expired"),
        (&active, "active"),
    ] {
        assert!(
            listed
                .stdout
                .contains(&format!("{}\t{state}\t", id_of(secret))),
            "{}",
            listed.dump()
        );
    }
}

async fn every_use_is_audited(backend: Backend) {
    let f = start(backend, "secret_audit");
    let good = f.collector.create_secret(&["--uses", "1"]);
    let brief = f.collector.create_secret(&["--expires", "1ms"]);
    let revoked = f.collector.create_secret(&[]);
    let revoke = f.collector.cli(&["secret", "revoke", id_of(&revoked)]);
    assert_eq!(revoke.exit_code, Some(0), "{}", revoke.dump());

    let (status, enrolled) = f.enroll("audited-laptop", &good).await;
    assert_eq!(status, StatusCode::CREATED);
    let device_id = enrolled["device_id"].as_str().unwrap().to_owned();
    let wrong = format!("{}_wrongwrongwrong", &good[..20]);
    let unknown = "pls_0123456789abcdef_notarealsecretatall";
    for (hostname, secret) in [
        ("used-up", good.as_str()),
        ("expired", brief.as_str()),
        ("revoked", revoked.as_str()),
        ("wrong", wrong.as_str()),
        ("unknown", unknown),
    ] {
        let (status, body) = f.enroll(hostname, secret).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{hostname}: {body}");
    }

    let audit = f.audit().await;
    let enroll = audit
        .iter()
        .find(|e| e["action"] == "device.enroll")
        .unwrap_or_else(|| panic!("no device.enroll in {audit:#?}"));
    assert_eq!(enroll["target"], device_id.as_str());
    assert_eq!(enroll["actor"], format!("secret:{}", id_of(&good)));
    assert_eq!(enroll["details"]["secret_id"], id_of(&good));
    assert_eq!(enroll["details"]["hostname"], "audited-laptop");
    let refusals: Vec<(String, String, String, String)> = audit
        .iter()
        .filter(|e| e["action"] == "device.enroll_refused")
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (
                text(&e["target"]),
                text(&e["details"]["reason"]),
                text(&e["details"]["hostname"]),
                text(&e["details"]["peer"]),
            )
        })
        .collect();
    let expected: Vec<(String, String, String, String)> = [
        (&wrong, "wrong_secret", "wrong"),
        (&revoked, "revoked", "revoked"),
        (&brief, "expired", "expired"),
        (&good, "used_up", "used-up"),
    ]
    .into_iter()
    .map(|(secret, reason, hostname)| {
        (
            id_of(secret).to_owned(),
            reason.to_owned(),
            hostname.to_owned(),
            "127.0.0.1".to_owned(),
        )
    })
    .collect();
    // Newest first; the unknown id left none.
    assert_eq!(refusals, expected, "{audit:#?}");

    // Creation and revocation, with who did it.
    for (action, secret) in [
        ("secret.create", &good),
        ("secret.create", &revoked),
        ("secret.revoke", &revoked),
    ] {
        let entry = audit
            .iter()
            .find(|e| e["action"] == action && e["target"] == id_of(secret))
            .unwrap_or_else(|| panic!("no {action} of {secret} in {audit:#?}"));
        assert!(
            entry["actor"].as_str().unwrap().starts_with("cli:"),
            "{entry}"
        );
    }
    let (status, _) = f
        .post(
            &format!("/api/v1/secrets/{}/revoke", id_of(&good)),
            &f.admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let audit = f.audit().await;
    assert_eq!(audit[0]["action"], "secret.revoke");
    assert_eq!(
        audit[0]["actor"],
        format!("token:{} (ops)", id_of(&f.admin))
    );

    let text = serde_json::to_string(&audit).unwrap();
    let log = f.collector.log();
    for secret in [&good, &brief, &revoked, &wrong] {
        let random = &secret[21..];
        assert!(!text.contains(random), "a secret in the audit log");
        assert!(!log.contains(random), "a secret in the log");
    }
}

/// The pin of the last certificate in `pem_file`, by openssl: the SHA-256
/// of its SubjectPublicKeyInfo, base64.
fn openssl_pin(pem_file: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | openssl base64 -A",
        pem_file.display()
    );
    let finished = run(Path::new("/bin/sh"), &["-c", &script], &[]);
    assert_eq!(finished.exit_code, Some(0), "{}", finished.dump());
    format!("sha256/{}", finished.stdout.trim())
}

/// The command line after the line starting `# <title>`.
fn command_after<'a>(out: &'a Finished, title: &str) -> &'a str {
    let at = out
        .stdout
        .find(&format!("# {title}"))
        .unwrap_or_else(|| panic!("no {title} in {}", out.dump()));
    let rest = &out.stdout[at..];
    let start = rest.find('\n').unwrap() + 1;
    let end = rest.find("\n\n").unwrap_or(rest.len());
    &rest[start..end]
}

async fn installers_print_working_commands(backend: Backend) {
    let f = start(backend, "secret_installers");
    let url = "https://palisade.example.org:8443";
    let version = env!("CARGO_PKG_VERSION");
    let count = || f.collector.cli(&["secret", "list"]).stdout.lines().count();

    // Without a URL, or with a bad one: refused, naming the flag, and no
    // secret is made.
    let before = count();
    for args in [
        vec!["installers"],
        vec![
            "installers",
            "--collector-url",
            "http://palisade.example.org",
        ],
    ] {
        let refused = f.collector.cli(&args);
        assert_eq!(refused.exit_code, Some(1), "{}", refused.dump());
        assert!(
            refused.stderr.contains("--collector-url"),
            "{}",
            refused.dump()
        );
    }
    assert_eq!(count(), before);

    let out = f.collector.cli(&[
        "installers",
        "--collector-url",
        url,
        "--uses",
        "2",
        "--label",
        "it's <ward> 9",
    ]);
    assert_eq!(out.exit_code, Some(0), "{}", out.dump());
    let pin = openssl_pin(&f.collector.state_dir.join("tls/cert.pem"));
    let secret = out
        .stdout
        .split(['\'', '"', '='])
        .find(|part| part.starts_with("pls_"))
        .unwrap_or_else(|| panic!("no secret in {}", out.dump()))
        .to_owned();
    assert_eq!(
        command_after(&out, "Windows"),
        format!(
            "msiexec /i palisade-agent-{version}-x64.msi /qn COLLECTOR_URL=\"{url}\" \
             ENROLL_SECRET=\"{secret}\" CA_PIN=\"{pin}\""
        )
    );
    let debian = command_after(&out, "Debian");
    assert_eq!(
        debian,
        format!(
            "sudo env PALISADE_COLLECTOR_URL='{url}' PALISADE_ENROLL_SECRET='{secret}' \
             PALISADE_CA_PIN='{pin}' apt-get install -y ./palisade-agent_{version}_amd64.deb"
        )
    );
    assert!(
        command_after(&out, "RHEL").ends_with(&format!(
            "dnf install -y ./palisade-agent-{version}-1.x86_64.rpm"
        )),
        "{}",
        out.dump()
    );
    let macos = command_after(&out, "macOS");
    assert!(
        macos.contains(&format!("'ENROLL_SECRET={secret}' 'CA_PIN={pin}'")),
        "{macos}"
    );
    assert!(
        macos.ends_with(&format!(
            "sudo installer -pkg palisade-agent-{version}.pkg -target /"
        )),
        "{macos}"
    );

    // sh reads the Debian line's values back exactly.
    let shown = debian.replace("sudo env", "env").replace(
        &format!("apt-get install -y ./palisade-agent_{version}_amd64.deb"),
        "printenv PALISADE_COLLECTOR_URL PALISADE_ENROLL_SECRET PALISADE_CA_PIN",
    );
    let values = run(Path::new("/bin/sh"), &["-c", &shown], &[]);
    assert_eq!(values.stdout, format!("{url}\n{secret}\n{pin}\n"));

    // The secret works, with the limits asked for.
    assert_eq!(f.enroll("installed", &secret).await.0, StatusCode::CREATED);
    let listed = f.get("/api/v1/secrets").await;
    let info = listed["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id_of(&secret))
        .unwrap()
        .clone();
    assert_eq!(info["max_uses"], 2);
    assert_eq!(info["label"], "it's <ward> 9");
    let expires: chrono::DateTime<Utc> = info["expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - Utc::now()).num_hours();
    assert!(
        (167..=168).contains(&days),
        "default expiry is a week: {info}"
    );
    assert!(!f.collector.log().contains(&secret), "a secret in the log");

    // --no-ca-pin, --expires never, and the URL from the config file.
    let config = f.collector.state_dir.join("collector.toml");
    std::fs::write(
        &config,
        "public_url = \"https://fleet.example.org/palisade/\"\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let out = f.collector.cli(&[
        "installers",
        "--config",
        &config,
        "--no-ca-pin",
        "--expires",
        "never",
    ]);
    assert_eq!(out.exit_code, Some(0), "{}", out.dump());
    assert!(!out.stdout.contains("CA_PIN"), "{}", out.dump());
    assert!(
        command_after(&out, "Windows")
            .contains("COLLECTOR_URL=\"https://fleet.example.org/palisade/\""),
        "{}",
        out.dump()
    );
    let bad = f.collector.cli(&["secret", "list", "--config", &config]);
    assert_eq!(bad.exit_code, Some(0), "{}", bad.dump());
    assert!(bad.stdout.contains("expires never"), "{}", bad.dump());
    std::fs::write(&config, "public_url = \"ftp://x.example\"\n").unwrap();
    let refused = f.collector.cli(&["installers", "--config", &config]);
    assert_eq!(refused.exit_code, Some(1), "{}", refused.dump());
    assert!(refused.stderr.contains("public_url"), "{}", refused.dump());
}

async fn installers_through_the_api(backend: Backend) {
    let f = start(backend, "secret_installers_api");
    let url = "https://palisade.example.org";
    let post = |token: &str, body: Value| {
        f.client
            .post(format!("{}/api/v1/installers", f.collector.url))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let answer = post(&f.viewer, serde_json::json!({"collector_url": url}))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    for (body, field) in [
        (serde_json::json!({}), "collector_url"),
        (
            serde_json::json!({"collector_url": "http://x.example"}),
            "collector_url",
        ),
        (serde_json::json!({"collector_url": url, "uses": 0}), "uses"),
    ] {
        let answer = post(&f.admin, body.clone()).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{body}");
        let refused: Value = answer.json().await.unwrap();
        assert!(
            refused["message"].as_str().unwrap().contains(field),
            "{body}: {refused}"
        );
    }
    assert_eq!(
        f.get("/api/v1/secrets").await["secrets"],
        Value::Array(vec![])
    );

    let answer = post(
        &f.admin,
        serde_json::json!({"collector_url": url, "uses": 5}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);
    let created: Value = answer.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap();
    let pin = openssl_pin(&f.collector.state_dir.join("tls/cert.pem"));
    let commands = created["commands"].as_array().unwrap();
    let oses: Vec<&str> = commands.iter().map(|c| c["os"].as_str().unwrap()).collect();
    assert_eq!(oses, ["windows", "debian", "rhel", "macos"]);
    for command in commands {
        let text = command["text"].as_str().unwrap();
        for part in [secret, url, pin.as_str()] {
            assert!(text.contains(part), "{part} not in {text}");
        }
    }
    assert_eq!(created["max_uses"], 5);
    assert_eq!(created["state"], "active");
    let expires: chrono::DateTime<Utc> = created["expires_at"].as_str().unwrap().parse().unwrap();
    assert!((167..=168).contains(&(expires - Utc::now()).num_hours()));
    assert_eq!(f.enroll("from-api", secret).await.0, StatusCode::CREATED);
    let audit = f.audit().await;
    assert!(
        audit
            .iter()
            .any(|e| e["action"] == "secret.create" && e["target"] == id_of(secret)),
        "{audit:#?}"
    );

    let answer = post(
        &f.admin,
        serde_json::json!({"collector_url": url, "ca_pin": false, "expires_in_seconds": 60}),
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);
    let created: Value = answer.json().await.unwrap();
    assert!(
        !created["commands"].to_string().contains("CA_PIN"),
        "{created}"
    );
    assert!(!f.collector.log().contains(secret), "a secret in the log");
}

palisade_tests::on_both_stores!(
    revocation_and_states,
    every_use_is_audited,
    installers_print_working_commands,
    installers_through_the_api,
);
