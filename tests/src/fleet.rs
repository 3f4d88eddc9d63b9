//! Long file: the simulator plans, enrolls and replays a fleet in one pass whose steps share its state.
//! The fleet simulator's engine, shared by the `fleet` binary, the overview
//! benchmark and the browser tests: plan a fleet of simulated laptops with a
//! month of posture history, enroll them with a collector over HTTPS and
//! send each its chain of signed, backdated reports.
//!
//! A plan is a pure function of the count, the history length, the report
//! interval, the seed and "now": the same seed gives the same hostnames,
//! users, platforms and verdict histories. The keys are always fresh
//! (`OsRng`), because a collector refuses a key it has enrolled before.
//!
//! Backdating: the collector refuses an `issued_at` only when it is ahead of
//! its clock by more than the allowed skew (`collector/src/server/reports.rs`);
//! there is no maximum age, so reports may start `--days` ago. Enrollment is
//! different: its `requested_at` must be within the skew of now, so every
//! device enrolls now and then sends its past. The collector judges a device
//! stale by when it *received* the last report (`last_seen_at`), so devices
//! planned to fall silent days ago look stale only once that much real time
//! has passed; their histories and the trend still end days ago.
//!
//! It only connects to the collector it is given.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, TimeDelta, Utc};
use palisade_shared::RuleId;
use palisade_shared::report::{CheckResult, CheckStatus};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::device::{CHECK_VARIANTS, OsFamily, Platform, SimulatedDevice, simulated_check};

/// Requests in flight at once unless told otherwise: enough to fill the
/// collector's group commits (its batcher gathers what arrives while the
/// previous batch commits) without queueing hundreds of connections on two
/// cores.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// The four rules every simulated report carries, in the agent's order.
pub const RULES: [&str; 4] = [
    RuleId::SCREEN_LOCK,
    RuleId::DISK_ENCRYPTION,
    RuleId::PASSWORD_POLICY,
    RuleId::USB_STORAGE,
];

/// How many times a report is tried again after a 503 or a lost
/// connection before its device gives up (the collector answers 503 while
/// its store is failing or it shuts down).
const SEND_ATTEMPTS: u32 = 4;

/// What to simulate and where to send it.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// `https://HOST:PORT` of the collector.
    pub collector_url: String,
    /// The PEM certificate the collector's TLS certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// An enrollment secret with at least `count` uses left.
    pub secret: String,
    pub count: usize,
    /// How far back the histories start.
    pub days: u32,
    /// Hours between two reports of one device.
    pub interval_hours: u32,
    pub seed: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct FleetRun {
    pub enrolled: usize,
    /// Reports answered 201.
    pub stored: usize,
    /// Reports answered 200 (the collector had them already).
    pub duplicates: usize,
    /// The latest posture of the planned fleet.
    pub compliant: usize,
    pub failing: usize,
    pub unknown: usize,
    /// Devices whose history ends days ago.
    pub silent: usize,
    pub elapsed: Duration,
}

impl FleetRun {
    /// Reports answered with a 2xx.
    pub fn reports(&self) -> usize {
        self.stored + self.duplicates
    }

    /// One line for a person.
    pub fn summary_line(&self, days: u32) -> String {
        let seconds = self.elapsed.as_secs_f64();
        format!(
            "fleet: {} devices enrolled, {} reports over the last {days} days sent in {seconds:.1} s \
             ({:.0} reports/s; {} stored, {} already there); latest posture: {} compliant, \
             {} failing, {} unknown; {} stopped reporting days ago",
            self.enrolled,
            self.reports(),
            self.reports() as f64 / seconds.max(0.001),
            self.stored,
            self.duplicates,
            self.compliant,
            self.failing,
            self.unknown,
            self.silent,
        )
    }
}

// ---------------------------------------------------------------------------
// The plan.

/// One device of a planned fleet and its history.
#[derive(Debug, Clone)]
pub struct PlannedDevice {
    pub hostname: String,
    pub platform: Platform,
    pub console_user: Option<String>,
    /// In increasing `issued_at` order; never empty.
    pub reports: Vec<PlannedReport>,
    /// The history ends days before "now".
    pub silent: bool,
}

/// One report of a planned history: when, and each rule's status and
/// wording (the order of [`RULES`]).
#[derive(Debug, Clone)]
pub struct PlannedReport {
    pub issued_at: DateTime<Utc>,
    pub verdicts: [(CheckStatus, u8); 4],
}

impl PlannedReport {
    /// The check results of this report on `family`.
    pub fn checks(&self, family: OsFamily) -> Vec<CheckResult> {
        RULES
            .iter()
            .zip(self.verdicts)
            .map(|(rule, (status, variant))| {
                simulated_check(rule, family, status, usize::from(variant))
            })
            .collect()
    }

    /// The device's overall status in this report: failing if any rule
    /// fails, else unknown if any is unknown, else compliant.
    pub fn overall(&self) -> CheckStatus {
        let statuses = self.verdicts.map(|(status, _)| status);
        if statuses.contains(&CheckStatus::Fail) {
            CheckStatus::Fail
        } else if statuses.iter().any(|s| *s != CheckStatus::Pass) {
            CheckStatus::Unknown
        } else {
            CheckStatus::Pass
        }
    }
}

impl PlannedDevice {
    /// The report the collector shows as current.
    pub fn latest(&self) -> &PlannedReport {
        // A plan never makes an empty history (see `plan_device`).
        &self.reports[self.reports.len() - 1]
    }
}

/// Departments of a hospital trust, for hostnames.
const SITES: [&str; 12] = [
    "ward7",
    "ward9",
    "icu",
    "radiology",
    "pharmacy",
    "maternity",
    "theatres",
    "outpatients",
    "pathology",
    "finance",
    "hr",
    "estates",
];
const FIRST_NAMES: [&str; 24] = [
    "aisha", "ben", "chloe", "david", "emeka", "fatima", "george", "hannah", "imran", "jess",
    "kwame", "laura", "mohammed", "niamh", "oliver", "priya", "rhys", "sarah", "tomasz", "uzma",
    "victoria", "wei", "yusuf", "zoe",
];
const SURNAMES: [&str; 24] = [
    "khan", "smith", "jones", "patel", "williams", "taylor", "brown", "davies", "evans", "wilson",
    "thomas", "roberts", "johnson", "ahmed", "walker", "wright", "okafor", "robinson", "thompson",
    "white", "hughes", "edwards", "green", "nowak",
];

/// Plans `count` devices with histories over the last `days` days, one
/// report every `interval_hours` (with jitter), ending at `now`.
pub fn plan_fleet(
    count: usize,
    days: u32,
    interval_hours: u32,
    seed: u64,
    now: DateTime<Utc>,
) -> Vec<PlannedDevice> {
    let platforms = Platform::catalogue();
    (0..count)
        .map(|index| plan_device(index, days, interval_hours, seed, now, &platforms))
        .collect()
}

/// The shape of one device's month.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Story {
    /// Every rule passes throughout.
    Clean,
    /// Some rules fail at first and are fixed one by one.
    Improving,
    /// Some rules fail throughout (a disk nobody re-installed).
    Stuck,
    /// Everything passed until a rule broke in the last days.
    Regressing,
    /// One probe cannot read what it needs, report after report.
    Unreadable,
}

fn plan_device(
    index: usize,
    days: u32,
    interval_hours: u32,
    seed: u64,
    now: DateTime<Utc>,
    platforms: &[(Platform, u32)],
) -> PlannedDevice {
    // One generator per device, so a device does not change when the fleet
    // grows (splitmix-style mixing of seed and index).
    let mut rng = StdRng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (index as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9),
    );
    let platform = pick_weighted(&mut rng, platforms).clone();
    let site = SITES[rng.gen_range(0..SITES.len())];
    let kind = match platform.family {
        OsFamily::Linux => "lx",
        OsFamily::MacOs => "mbp",
        OsFamily::Windows => "lt",
    };
    let hostname = format!("{site}-{kind}-{index:05}");
    let first = FIRST_NAMES[rng.gen_range(0..FIRST_NAMES.len())];
    let surname = SURNAMES[rng.gen_range(0..SURNAMES.len())];
    // About 3% of laptops report nobody at the keyboard (at the login
    // screen when the cycle ran).
    let console_user = (rng.gen_range(0..100) >= 3).then(|| match platform.family {
        OsFamily::Linux => format!("{}.{surname}", &first[..1]),
        OsFamily::MacOs => format!("{first}{surname}"),
        OsFamily::Windows => format!("TRUST\\{}.{surname}", &first[..1]),
    });

    let span = TimeDelta::days(i64::from(days.max(1)));
    let start = now - span;
    // Most laptops were enrolled before the window; some arrived during it.
    let first_at = if rng.gen_range(0..100) < 85 {
        start + minutes(rng.gen_range(0..120))
    } else {
        start + seconds(rng.gen_range(0..span.num_seconds() * 2 / 3))
    };
    // About 5% stopped reporting 3 to 12 days ago (a laptop in a drawer),
    // never before their first report.
    let silent_for = TimeDelta::days(rng.gen_range(3..=12));
    let silent = rng.gen_range(0..100) < 5 && now - silent_for > first_at + TimeDelta::days(1);
    let last_at = if silent {
        now - silent_for
    } else {
        now - minutes(rng.gen_range(2..90))
    };
    let times = report_times(&mut rng, first_at, last_at, interval_hours);

    let story = match rng.gen_range(0..100) {
        0..35 => Story::Clean,
        35..75 => Story::Improving,
        75..90 => Story::Stuck,
        90..95 => Story::Regressing,
        _ => Story::Unreadable,
    };
    let timelines: Vec<RuleTimeline> = (0..RULES.len())
        .map(|_| RuleTimeline {
            variant: rng.gen_range(0..CHECK_VARIANTS) as u8,
            ..RuleTimeline::default()
        })
        .collect();
    let mut timelines = timelines;
    let active = last_at - first_at;
    let at_fraction = |rng: &mut StdRng, low: f64, high: f64| {
        first_at + seconds((active.num_seconds() as f64 * rng.gen_range(low..high)) as i64)
    };
    match story {
        Story::Clean => {}
        Story::Improving => {
            for _ in 0..rng.gen_range(1..=3) {
                let rule = rng.gen_range(0..RULES.len());
                timelines[rule].fail_until = Some(at_fraction(&mut rng, 0.05, 0.95));
            }
        }
        Story::Stuck => {
            // Disk encryption needs a reinstall and password policy needs
            // IT: those are the ones that stay failing.
            let rule = if rng.gen_bool(0.6) { 1 } else { 2 };
            timelines[rule].fail_until = Some(now + TimeDelta::days(1));
            if rng.gen_bool(0.3) {
                let other = rng.gen_range(0..RULES.len());
                timelines[other].fail_until = Some(at_fraction(&mut rng, 0.1, 0.8));
            }
        }
        Story::Regressing => {
            // Someone plugged a USB drive in, or changed the idle delay.
            let rule = if rng.gen_bool(0.5) { 3 } else { 0 };
            let recent = (last_at - TimeDelta::days(10)).max(first_at);
            let since = recent + seconds(rng.gen_range(0..(last_at - recent).num_seconds().max(1)));
            timelines[rule].fail_from = Some(since);
        }
        Story::Unreadable => {
            let rule = rng.gen_range(0..RULES.len());
            timelines[rule].unreadable = true;
        }
    }

    let reports = times
        .into_iter()
        .map(|issued_at| {
            let mut verdicts = [(CheckStatus::Pass, 0u8); 4];
            for (verdict, timeline) in verdicts.iter_mut().zip(&timelines) {
                // Now and then a probe times out (one rule in 300 reports).
                let glitch = rng.gen_range(0..300) == 0;
                *verdict = (timeline.status_at(issued_at, glitch), timeline.variant);
            }
            PlannedReport {
                issued_at,
                verdicts,
            }
        })
        .collect();
    PlannedDevice {
        hostname,
        platform,
        console_user,
        reports,
        silent,
    }
}

#[derive(Debug, Default, Clone)]
struct RuleTimeline {
    /// Fails before this time, passes after.
    fail_until: Option<DateTime<Utc>>,
    /// Passes before this time, fails after.
    fail_from: Option<DateTime<Utc>>,
    /// Always unknown.
    unreadable: bool,
    variant: u8,
}

impl RuleTimeline {
    fn status_at(&self, at: DateTime<Utc>, glitch: bool) -> CheckStatus {
        if self.unreadable {
            return CheckStatus::Unknown;
        }
        let failing = self.fail_until.is_some_and(|until| at < until)
            || self.fail_from.is_some_and(|from| at >= from);
        if failing {
            CheckStatus::Fail
        } else if glitch {
            CheckStatus::Unknown
        } else {
            CheckStatus::Pass
        }
    }
}

/// Report times from `first` to `last` inclusive, about `interval_hours`
/// apart with up to an eighth of the interval of jitter, strictly
/// increasing.
fn report_times(
    rng: &mut StdRng,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    interval_hours: u32,
) -> Vec<DateTime<Utc>> {
    let interval = TimeDelta::hours(i64::from(interval_hours.max(1)));
    let jitter = interval.num_seconds() / 8;
    let mut times = vec![first];
    let mut next = first + interval;
    while next + interval / 2 < last {
        let at = next + seconds(rng.gen_range(-jitter..=jitter));
        if times.last().is_some_and(|previous| at > *previous) {
            times.push(at);
        }
        next += interval;
    }
    if times.last().is_some_and(|previous| last > *previous) {
        times.push(last);
    }
    times
}

fn pick_weighted<'a, T>(rng: &mut StdRng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, weight)| weight).sum();
    let mut ticket = rng.gen_range(0..total.max(1));
    for (item, weight) in items {
        if ticket < *weight {
            return item;
        }
        ticket -= weight;
    }
    &items[items.len() - 1].0
}

fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

// ---------------------------------------------------------------------------
// Talking to the collector.

/// An HTTPS client for one collector, trusting only `ca_pem`.
#[derive(Debug, Clone)]
pub struct CollectorClient {
    http: reqwest::Client,
    base_url: String,
}

/// What the collector answered to a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// 201
    Stored,
    /// 200: the collector had it already.
    Duplicate,
}

impl CollectorClient {
    /// A client for the collector at `base_url` (`https://HOST:PORT`),
    /// checking its certificate against `ca_pem` only.
    pub fn new(base_url: &str, ca_pem: &[u8]) -> anyhow::Result<Self> {
        let base_url = check_collector_url(base_url)?;
        crate::install_crypto_provider();
        let certificate = reqwest::Certificate::from_pem(ca_pem)
            .context("the CA file is not a PEM certificate")?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(certificate)
            .connect_timeout(Duration::from_secs(10))
            // A loaded two-core collector answers in about a second (see
            // BENCHMARKS.md); a minute only ever matters when it is stuck.
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTPS client")?;
        Ok(Self { http, base_url })
    }

    /// Enrolls `device` with `secret`, setting its device id.
    pub async fn enroll(&self, device: &mut SimulatedDevice, secret: &str) -> anyhow::Result<()> {
        let url = format!("{}/api/v1/enroll", self.base_url);
        let body = device.enroll_envelope(secret, Utc::now()).to_json();
        let response = self
            .http
            .post(&url)
            .body(body)
            .send()
            .await
            .map_err(|err| unreachable_collector(&self.base_url, &err))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let code = answer["error"].as_str().unwrap_or("");
        match (status.as_u16(), code) {
            (201, _) => {
                let device_id = answer["device_id"]
                    .as_str()
                    .with_context(|| format!("the enrollment answer has no device_id: {text}"))?;
                device.device_id = Some(device_id.to_owned());
                Ok(())
            }
            (401, "bad_secret") => bail!(
                "the collector refused the enrollment secret (401 bad_secret): it is wrong, used up \
                 or expired; make one with `palisade-collector secret create --uses N`"
            ),
            (429, _) => bail!(
                "the collector refuses enrollments from this address for now (429 rate_limited) \
                 after too many failed attempts"
            ),
            (404 | 405, _) => bail!(
                "{} does not look like a Palisade collector: POST /api/v1/enroll answered {status}",
                self.base_url
            ),
            _ => bail!("enrolling {} answered {status}: {text}", device.hostname),
        }
    }

    /// Signs a report of `checks` issued at `issued_at` as the device's
    /// next, advances its chain and sends it; 503s and lost connections are
    /// tried again a few times.
    pub async fn send(
        &self,
        device: &mut SimulatedDevice,
        issued_at: DateTime<Utc>,
        checks: Vec<CheckResult>,
    ) -> anyhow::Result<Delivered> {
        let report = device.next_report_with(issued_at, checks);
        let body = device.sign_and_advance(&report).to_json();
        let url = format!("{}/api/v1/reports", self.base_url);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.http.post(&url).body(body.clone()).send().await;
            let retry_reason = match outcome {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    match status.as_u16() {
                        201 => return Ok(Delivered::Stored),
                        200 => return Ok(Delivered::Duplicate),
                        503 => format!("503: {text}"),
                        _ => bail!(
                            "report {} of {} answered {status}: {text}",
                            report.sequence,
                            device.hostname
                        ),
                    }
                }
                Err(err) if attempt == 1 && err.is_connect() => {
                    return Err(unreachable_collector(&self.base_url, &err));
                }
                Err(err) => format!("{:#}", anyhow::Error::new(err)),
            };
            if attempt >= SEND_ATTEMPTS {
                bail!(
                    "report {} of {} failed {attempt} times, last: {retry_reason}",
                    report.sequence,
                    device.hostname
                );
            }
            // Back off 0.5, 1, 2 s: a collector answering 503 is busy or
            // restarting, and hammering it does not help.
            tokio::time::sleep(Duration::from_millis(500 << (attempt - 1))).await;
        }
    }
}

/// `--collector` as `scheme://host[:port]`, without a trailing slash.
fn check_collector_url(text: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(text)
        .with_context(|| format!("the collector URL {text:?} is not a URL (https://HOST:PORT)"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        bail!("the collector URL {text:?} must be https://HOST:PORT");
    }
    if url.path() != "/" && !url.path().is_empty() {
        bail!("the collector URL {text:?} must have no path (https://HOST:PORT)");
    }
    Ok(text.trim_end_matches('/').to_owned())
}

fn unreachable_collector(base_url: &str, err: &reqwest::Error) -> anyhow::Error {
    let detail = error_chain(err);
    let hint = if detail.contains("certificate") || detail.contains("UnknownIssuer") {
        " (the certificate does not chain to the CA file: is it the collector's tls/cert.pem?)"
    } else if err.is_connect() {
        " (is it running, and on that port?)"
    } else {
        ""
    };
    anyhow::anyhow!("cannot reach the collector at {base_url}: {detail}{hint}")
}

/// The error and all its sources on one line.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

// ---------------------------------------------------------------------------
// A whole run.

/// Plans the fleet, enrolls every device and sends every history, with at
/// most `options.concurrency` requests in flight. The first device enrolls
/// alone, so a wrong URL, certificate or secret is one clear error.
pub async fn run_fleet(options: &FleetOptions) -> anyhow::Result<FleetRun> {
    if options.count == 0 {
        bail!("--count must be at least 1");
    }
    if options.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let client = CollectorClient::new(&options.collector_url, &options.ca_pem)?;
    let started = Instant::now();
    let plan = plan_fleet(
        options.count,
        options.days,
        options.interval_hours,
        options.seed,
        Utc::now(),
    );
    let mut run = FleetRun::default();
    for device in &plan {
        match device.latest().overall() {
            CheckStatus::Pass => run.compliant += 1,
            CheckStatus::Fail => run.failing += 1,
            _ => run.unknown += 1,
        }
        run.silent += usize::from(device.silent);
    }

    let mut plan = plan.into_iter();
    let Some(first) = plan.next() else {
        bail!("--count must be at least 1");
    };
    let mut first_device = simulated(&first);
    client
        .enroll(&mut first_device, &options.secret)
        .await
        .with_context(|| format!("cannot enroll {}", first.hostname))?;

    let secret: Arc<str> = Arc::from(options.secret.as_str());
    let mut running = tokio::task::JoinSet::new();
    let mut failures: Vec<anyhow::Error> = Vec::new();
    let mut tally = Tally::default();
    let mut pending = std::iter::once((first, Some(first_device))).chain(plan.map(|p| (p, None)));
    loop {
        // After a failure no new device starts: the run ends with the first
        // failure's reason once the running devices are done.
        while running.len() < options.concurrency && failures.is_empty() {
            let Some((planned, enrolled)) = pending.next() else {
                break;
            };
            let (client, secret) = (client.clone(), Arc::clone(&secret));
            running.spawn(async move { deliver(&client, &secret, planned, enrolled).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        match joined {
            Ok(Ok(done)) => tally.add(&done),
            Ok(Err((done, err))) => {
                tally.add(&done);
                failures.push(err);
            }
            Err(err) => failures.push(anyhow::Error::new(err).context("a device task failed")),
        }
    }
    run.enrolled = tally.enrolled;
    run.stored = tally.stored;
    run.duplicates = tally.duplicates;
    run.elapsed = started.elapsed();
    if let Some(first_failure) = failures.into_iter().next() {
        return Err(first_failure.context(format!(
            "some devices could not deliver their history ({} enrolled, {} reports delivered)",
            run.enrolled,
            run.reports()
        )));
    }
    Ok(run)
}

#[derive(Debug, Default)]
struct Tally {
    enrolled: usize,
    stored: usize,
    duplicates: usize,
}

impl Tally {
    fn add(&mut self, done: &Tally) {
        self.enrolled += done.enrolled;
        self.stored += done.stored;
        self.duplicates += done.duplicates;
    }
}

/// A fresh device for a planned one.
pub fn simulated(planned: &PlannedDevice) -> SimulatedDevice {
    let mut device =
        SimulatedDevice::new(&planned.hostname).with_platform(planned.platform.clone());
    device.console_user.clone_from(&planned.console_user);
    device
}

/// Enrolls one planned device (unless it was already) and sends its history
/// in order; one request in flight per device.
async fn deliver(
    client: &CollectorClient,
    secret: &str,
    planned: PlannedDevice,
    enrolled: Option<SimulatedDevice>,
) -> Result<Tally, (Tally, anyhow::Error)> {
    let mut done = Tally::default();
    let mut device = match enrolled {
        Some(device) => device,
        None => {
            let mut device = simulated(&planned);
            if let Err(err) = client.enroll(&mut device, secret).await {
                return Err((
                    done,
                    err.context(format!("cannot enroll {}", planned.hostname)),
                ));
            }
            device
        }
    };
    done.enrolled = 1;
    let family = planned.platform.family;
    for report in &planned.reports {
        match client
            .send(&mut device, report.issued_at, report.checks(family))
            .await
        {
            Ok(Delivered::Stored) => done.stored += 1,
            Ok(Delivered::Duplicate) => done.duplicates += 1,
            Err(err) => return Err((done, err)),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn the_same_seed_plans_the_same_fleet() {
        let a = plan_fleet(50, 30, 24, 7, now());
        let b = plan_fleet(50, 30, 24, 7, now());
        let c = plan_fleet(50, 30, 24, 8, now());
        let names = |plan: &[PlannedDevice]| -> Vec<String> {
            plan.iter().map(|d| d.hostname.clone()).collect()
        };
        assert_eq!(names(&a), names(&b));
        assert_ne!(names(&a), names(&c));
        assert_eq!(
            a.iter().map(|d| d.reports.len()).collect::<Vec<_>>(),
            b.iter().map(|d| d.reports.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn histories_are_in_order_within_the_window_and_the_fleet_is_mixed() {
        let plan = plan_fleet(400, 30, 24, 1, now());
        let mut families = std::collections::HashSet::new();
        let (mut failing, mut silent, mut improved) = (0, 0, 0);
        for device in &plan {
            families.insert(device.platform.family);
            assert!(!device.reports.is_empty());
            for pair in device.reports.windows(2) {
                assert!(pair[0].issued_at < pair[1].issued_at, "{device:?}");
            }
            let first = device.reports[0].issued_at;
            assert!(first >= now() - TimeDelta::days(30), "{first}");
            assert!(device.latest().issued_at < now());
            failing += usize::from(device.latest().overall() == CheckStatus::Fail);
            silent += usize::from(device.silent);
            if device.silent {
                assert!(device.latest().issued_at <= now() - TimeDelta::days(3));
            }
            improved += usize::from(
                device.reports[0].overall() == CheckStatus::Fail
                    && device.latest().overall() == CheckStatus::Pass,
            );
        }
        assert_eq!(families.len(), 3);
        // Most devices improve, some stay failing, about 5% fall silent.
        assert!(improved > 80, "{improved} improved");
        assert!((20..160).contains(&failing), "{failing} failing");
        assert!((5..40).contains(&silent), "{silent} silent");
    }

    #[test]
    fn a_bad_collector_url_is_named() {
        for bad in ["collector:8443", "ftp://x", "https://h:1/api"] {
            let err = check_collector_url(bad).err().map(|e| e.to_string());
            assert!(err.as_deref().unwrap_or("").contains(bad), "{bad}: {err:?}");
        }
        assert_eq!(
            check_collector_url("https://127.0.0.1:8443/")
                .ok()
                .as_deref(),
            Some("https://127.0.0.1:8443")
        );
    }
}
