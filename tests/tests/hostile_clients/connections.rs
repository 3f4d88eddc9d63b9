//! Clients that hold connections instead of sending requests: a slowloris
//! that sends its headers one byte a second, a thousand idle connections
//! (half bare TCP, half through the TLS handshake), and the collector must
//! go on serving a valid device meanwhile and close every one of them.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_tests::databases::Backend;
use palisade_tests::device::SimulatedDevice;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use super::World;

/// Connections held open at once.
const IDLE_CONNECTIONS: usize = 1000;
/// How long the collector may take to close a connection that sends
/// nothing or dribbles: its idle and header timeouts are well under this;
/// the deadline only matters when they are missing, and then the test fails.
const CLOSE_DEADLINE: Duration = Duration::from_secs(150);

/// A client TLS configuration trusting the collector's certificate.
fn tls_config(world: &World) -> Arc<rustls::ClientConfig> {
    palisade_tests::install_crypto_provider();
    let pem = std::fs::read(world.collector.state_dir.join("tls/cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        roots.add(certificate.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A TCP connection to the collector that has finished the TLS handshake
/// (HTTP/1.1 by ALPN) and has sent nothing since.
fn handshaken(
    world: &World,
    config: &Arc<rustls::ClientConfig>,
) -> (rustls::ClientConnection, TcpStream) {
    let mut tcp = TcpStream::connect(world.collector.address()).unwrap();
    let mut config = (**config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).unwrap();
    }
    (tls, tcp)
}

/// Whether the collector has closed `tcp`: waits up to `wait` for a read
/// to see the end of the stream (any bytes before it, such as a TLS alert,
/// are read past).
fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    tcp.set_read_timeout(Some(wait)).unwrap();
    let mut buffer = [0u8; 4096];
    loop {
        match tcp.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Waits until the collector closes `tcp`, up to [`CLOSE_DEADLINE`] from
/// `since`.
fn wait_closed(tcp: &mut TcpStream, since: Instant, what: &str) {
    while since.elapsed() < CLOSE_DEADLINE {
        if closed_within(tcp, Duration::from_secs(1)) {
            return;
        }
    }
    panic!("{what}: still open after {CLOSE_DEADLINE:?}");
}

/// Sends an endless request head one byte at a time, each after the
/// collector has had a second to close the connection; returns how many
/// bytes went out before it did.
fn slowloris(world: &World, config: &Arc<rustls::ClientConfig>) -> usize {
    let (mut tls, mut tcp) = handshaken(world, config);
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let started = Instant::now();
    for sent in 0.. {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if tls.writer().write_all(&[byte]).is_err() {
            return sent;
        }
        while tls.wants_write() {
            if tls.write_tls(&mut tcp).is_err() {
                return sent;
            }
        }
        if closed_within(&mut tcp, Duration::from_secs(1)) {
            return sent + 1;
        }
        assert!(
            started.elapsed() < CLOSE_DEADLINE,
            "the slowloris was never cut off"
        );
    }
    unreachable!()
}

pub async fn slowloris_idle_and_a_thousand_connections() {
    let world = Arc::new(World::start(Backend::Sqlite, "hostile_connections").await);
    let config = tls_config(&world);

    let dribbler = {
        let (world, config) = (Arc::clone(&world), Arc::clone(&config));
        tokio::task::spawn_blocking(move || slowloris(&world, &config))
    };
    let opened = Instant::now();
    let held = {
        let (world, config) = (Arc::clone(&world), Arc::clone(&config));
        tokio::task::spawn_blocking(move || {
            let bare: Vec<TcpStream> = (0..IDLE_CONNECTIONS / 2)
                .map(|_| TcpStream::connect(world.collector.address()).unwrap())
                .collect();
            let tls: Vec<TcpStream> = (0..IDLE_CONNECTIONS / 2)
                .map(|_| handshaken(&world, &config).1)
                .collect();
            (bare, tls)
        })
        .await
        .unwrap()
    };

    // With all of that held open, a new device enrolls and reports.
    let mut device = SimulatedDevice::new("served-meanwhile");
    world.enroll(&mut device).await;
    world.accept(&device.next_envelope()).await;

    // The slowloris is cut off while its head is still unfinished.
    let sent = dribbler.await.unwrap();
    assert!(sent >= 2, "closed after {sent} bytes: not a header timeout");

    // Every idle connection is closed: the bare ones by the TLS handshake
    // timeout, the handshaken ones by the idle timeout.
    let (mut bare, mut tls) = held;
    tokio::task::spawn_blocking(move || {
        for (n, tcp) in bare.iter_mut().enumerate() {
            wait_closed(tcp, opened, &format!("bare TCP connection {n}"));
        }
        for (n, tcp) in tls.iter_mut().enumerate() {
            wait_closed(tcp, opened, &format!("idle TLS connection {n}"));
        }
    })
    .await
    .unwrap();
    world.assert_still_well().await;
    assert_eq!(
        world.store.count_reports().await.unwrap(),
        4,
        "alice 2, bob 1, the new device 1"
    );
}
