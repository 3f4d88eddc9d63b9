//! A stand-in for the daemon's report loop, for the spool's crash test
//! (`agent/tests/spool_crash.rs`) and for measuring append latency.
//!
//! It opens the spool, then appends signed reports as fast as it can, each
//! the next link of the chain, and prints one line per step to stdout,
//! flushed before the next step begins, so a line on stdout means the step
//! finished:
//!
//! ```text
//! opened <next sequence> <dropped unreported> <recovery as Debug>
//! durable <sequence> <digest> carried=<n> evicted=<s1,s2,…>
//! acking <sequence>         (with --ack-every: the oldest entry, as if the
//! acked <sequence>           collector had answered 2xx)
//! done <appends> <mean µs> <p50 µs> <p99 µs> <max µs>   (with --limit)
//! ```
//!
//! Usage: `spool_writer --dir DIR --seed HEX [--max-reports N]
//! [--max-bytes N] [--ack-every K] [--limit N]`. The key is the Ed25519 seed
//! given in hex, so the test can verify every envelope.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, bail};
use chrono::Utc;
use ed25519_dalek::SigningKey;
use palisade_agent::spool::{Spool, SpoolLimits};
use palisade_shared::envelope::REPORT_PAYLOAD_TYPE;
use palisade_shared::{Envelope, Report};

/// A real report of four rules (about 2.7 KiB of JSON), as the base of every
/// report written: the size is what a spool really holds.
const SAMPLE_REPORT: &str = include_str!("../../shared/tests/data/report-v1.json");

struct Args {
    dir: PathBuf,
    seed: [u8; 32],
    limits: SpoolLimits,
    ack_every: u64,
    limit: Option<u64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("spool_writer: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let key = SigningKey::from_bytes(&args.seed);
    let mut base = Report::from_json(SAMPLE_REPORT.as_bytes()).context("sample report")?;
    base.events.clear();

    let mut spool = Spool::open(&args.dir, args.limits).context("opening the spool")?;
    let mut out = std::io::stdout().lock();
    let link = spool.next_link();
    writeln!(
        out,
        "opened {} {} {:?}",
        link.sequence,
        link.dropped,
        spool.recovery()
    )?;
    out.flush()?;

    let mut latencies_us = Vec::new();
    let mut appends: u64 = 0;
    while args.limit.is_none_or(|limit| appends < limit) {
        let now = Utc::now();
        let mut report = base.clone();
        report.issued_at = now;
        let link = spool.next_link();
        link.apply_to(&mut report, now);
        let envelope = Envelope::sign(REPORT_PAYLOAD_TYPE, &report.to_payload(), &key).to_json();

        let started = Instant::now();
        let appended = spool.append(&envelope)?;
        latencies_us.push(started.elapsed().as_micros());
        appends += 1;
        let evicted: Vec<String> = appended.evicted.iter().map(u64::to_string).collect();
        writeln!(
            out,
            "durable {} {} carried={} evicted={}",
            appended.sequence,
            appended.digest,
            link.dropped,
            evicted.join(",")
        )?;
        out.flush()?;

        if args.ack_every > 0 && appends % args.ack_every == 0 {
            if let Some(oldest) = spool.oldest() {
                writeln!(out, "acking {oldest}")?;
                out.flush()?;
                spool.acknowledge(oldest)?;
                writeln!(out, "acked {oldest}")?;
                out.flush()?;
            }
        }
    }

    latencies_us.sort_unstable();
    let count = latencies_us.len().max(1);
    let mean = latencies_us.iter().sum::<u128>() / count as u128;
    let at = |fraction: f64| {
        let index = ((count as f64 * fraction) as usize).min(count - 1);
        latencies_us.get(index).copied().unwrap_or_default()
    };
    writeln!(
        out,
        "done {appends} {mean} {} {} {}",
        at(0.5),
        at(0.99),
        latencies_us.last().copied().unwrap_or_default()
    )?;
    Ok(())
}

fn parse_args() -> anyhow::Result<Args> {
    let mut dir = None;
    let mut seed = None;
    let mut limits = SpoolLimits::default();
    let mut ack_every = 0;
    let mut limit = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--seed" => {
                let bytes = hex::decode(value()?).context("--seed is not hex")?;
                seed = Some(
                    <[u8; 32]>::try_from(bytes.as_slice())
                        .map_err(|_| anyhow::anyhow!("--seed must be 32 bytes"))?,
                );
            }
            "--max-reports" => limits.max_reports = value()?.parse()?,
            "--max-bytes" => limits.max_bytes = value()?.parse()?,
            "--ack-every" => ack_every = value()?.parse()?,
            "--limit" => limit = Some(value()?.parse()?),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(Args {
        dir: dir.context("--dir is required")?,
        seed: seed.context("--seed is required")?,
        limits,
        ack_every,
        limit,
    })
}
