//! `ca_pin` against a real collector over HTTPS: the agent enrolls when the
//! pin names the key of the collector's certificate or of the CA that
//! signed it, and refuses (with the pin in the message) when it names
//! neither, or when the pinned CA signed a certificate for another host.
//!
//! The collector serves whatever `tls/cert.pem` and `tls/key.pem` its state
//! directory holds (`--self-signed-tls` makes them only when absent), so the
//! chains made here with rcgen are served by the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic in a test is a failed assertion

use std::path::Path;

use palisade_shared::pin::CaPin;
use palisade_tests::agent;
use palisade_tests::collector::RunningCollector;

#[test]
fn a_pin_of_the_collectors_own_key_enrolls() {
    let collector_dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let pin = collector.served_pin();

    let enrolled = enroll_with_pin(&collector, &pin);
    assert_eq!(enrolled.exit_code, Some(0), "{}", enrolled.dump());
    assert!(
        enrolled.stdout.starts_with("enrolled as dev_"),
        "{}",
        enrolled.dump()
    );
}

#[test]
fn a_pin_of_another_key_is_refused_and_named() {
    let collector_dir = tempfile::tempdir().unwrap();
    let collector = RunningCollector::start(collector_dir.path(), None);
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pin = CaPin::of_certificate(stranger.cert.der()).unwrap();

    let refused = enroll_with_pin(&collector, &pin);
    assert_eq!(refused.exit_code, Some(2), "{}", refused.dump());
    assert!(
        refused.stderr.contains(&format!(
            "no certificate the collector sent has the key of ca_pin {pin}"
        )),
        "{}",
        refused.dump()
    );
}

#[test]
fn a_pin_of_the_signing_ca_enrolls_when_the_collector_sends_its_chain() {
    let collector_dir = tempfile::tempdir().unwrap();
    let ca = Chain::serve(collector_dir.path(), "127.0.0.1");
    let collector = RunningCollector::start(collector_dir.path(), None);

    let enrolled = enroll_with_pin(&collector, &ca);
    assert_eq!(enrolled.exit_code, Some(0), "{}", enrolled.dump());
}

#[test]
fn the_pinned_ca_does_not_vouch_for_another_hosts_certificate() {
    let collector_dir = tempfile::tempdir().unwrap();
    let ca = Chain::serve(collector_dir.path(), "collector.example.org");
    let collector = RunningCollector::start(collector_dir.path(), None);

    let refused = enroll_with_pin(&collector, &ca);
    assert_eq!(refused.exit_code, Some(2), "{}", refused.dump());
    assert!(
        refused
            .stderr
            .contains("certificate not valid for name \"127.0.0.1\""),
        "{}",
        refused.dump()
    );
}

fn enroll_with_pin(collector: &RunningCollector, pin: &CaPin) -> palisade_tests::Finished {
    let agent_dir = tempfile::tempdir().unwrap();
    let config = agent_dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "collector_url = \"{}\"\nca_pin = \"{pin}\"\nstate_dir = \"{}\"\n",
            collector.url,
            agent_dir.path().join("state").display()
        ),
    )
    .unwrap();
    let secret = collector.create_secret(&[]);
    agent(&[
        "enroll",
        "--config",
        config.to_str().unwrap(),
        "--secret",
        &secret,
    ])
}

/// A CA and a collector certificate it signed for `host`.
struct Chain;

impl Chain {
    /// Writes the chain (collector certificate, then the CA) and the
    /// collector's key where the collector reads them; returns the CA's pin.
    fn serve(state_dir: &Path, host: &str) -> CaPin {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Palisade test trust CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();

        let leaf_params = rcgen::CertificateParams::new(vec![host.to_owned()]).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();

        let tls = state_dir.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("cert.pem"), format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(tls.join("key.pem"), leaf_key.serialize_pem()).unwrap();
        CaPin::of_certificate(ca.der()).unwrap()
    }
}
