//! A private D-Bus session bus and a notification server on it, for tests of
//! `palisade-agent nudge` that must see the real `Notify` calls.
//!
//! [`SessionBus::start`] runs `dbus-daemon --session --nofork` (package
//! `dbus`) and kills it when dropped, so a test never touches the machine's
//! own bus. [`NotificationServer::start`] owns `org.freedesktop.Notifications`
//! on that bus (zbus, the same major version notify-rust uses), implements
//! the four methods of the Desktop Notifications spec a client may call, and
//! records each `Notify` before replying: once a client's call has returned,
//! its [`NotifyCall`] is already in [`NotificationServer::take_calls`].

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedValue;

const OBJECT_PATH: &str = "/org/freedesktop/Notifications";
const BUS_NAME: &str = "org.freedesktop.Notifications";

/// A `dbus-daemon` of our own; killed on drop.
#[derive(Debug)]
pub struct SessionBus {
    pub address: String,
    daemon: Child,
}

impl SessionBus {
    /// Starts the daemon and reads the address it prints.
    pub async fn start(deadline: Duration) -> Self {
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("dbus-daemon runs (apt-get install dbus)");
        let stdout = daemon.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(deadline, lines.next_line())
            .await
            .expect("dbus-daemon printed its address in time")
            .expect("dbus-daemon stdout is readable")
            .expect("dbus-daemon printed an address");
        assert!(address.starts_with("unix:"), "{address}");
        Self { address, daemon }
    }
}

/// One `Notify` call as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyCall {
    /// The id the server answered with.
    pub id: u32,
    pub app_name: String,
    pub replaces_id: u32,
    pub summary: String,
    pub body: String,
    /// Key, label, key, label, …
    pub actions: Vec<String>,
    /// The `urgency` hint: 0 low, 1 normal, 2 critical; `None` when absent.
    pub urgency: Option<u8>,
}

struct Notifications {
    calls: Arc<Mutex<Vec<NotifyCall>>>,
    arrived: mpsc::UnboundedSender<NotifyCall>,
    next_id: AtomicU32,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Notifications {
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        app_name: String,
        replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let id = if replaces_id != 0 {
            replaces_id
        } else {
            self.next_id.fetch_add(1, Ordering::SeqCst)
        };
        let urgency = hints
            .get("urgency")
            .and_then(|value| value.downcast_ref::<u8>().ok());
        let call = NotifyCall {
            id,
            app_name,
            replaces_id,
            summary,
            body,
            actions,
            urgency,
        };
        self.calls.lock().unwrap().push(call.clone());
        let _ = self.arrived.send(call);
        id
    }

    fn get_capabilities(&self) -> Vec<String> {
        vec!["actions".to_owned(), "body".to_owned()]
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "palisade-test-notifications".to_owned(),
            "palisade".to_owned(),
            "0.1".to_owned(),
            "1.2".to_owned(),
        )
    }

    fn close_notification(&self, _id: u32) {}

    #[zbus(signal)]
    async fn action_invoked(
        emitter: &SignalEmitter<'_>,
        id: u32,
        action_key: &str,
    ) -> zbus::Result<()>;
}

/// The notification server; stops with its connection when dropped.
pub struct NotificationServer {
    connection: zbus::Connection,
    calls: Arc<Mutex<Vec<NotifyCall>>>,
    arrived: mpsc::UnboundedReceiver<NotifyCall>,
}

impl std::fmt::Debug for NotificationServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationServer").finish_non_exhaustive()
    }
}

impl NotificationServer {
    /// Connects to `bus` and owns `org.freedesktop.Notifications` there.
    pub async fn start(bus: &SessionBus) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let server = Notifications {
            calls: Arc::clone(&calls),
            arrived: arrived_tx,
            next_id: AtomicU32::new(1),
        };
        let connection = zbus::connection::Builder::address(bus.address.as_str())
            .unwrap()
            .name(BUS_NAME)
            .unwrap()
            .serve_at(OBJECT_PATH, server)
            .unwrap()
            .build()
            .await
            .unwrap();
        Self {
            connection,
            calls,
            arrived,
        }
    }

    /// Every call received since the last take.
    pub fn take_calls(&mut self) -> Vec<NotifyCall> {
        while self.arrived.try_recv().is_ok() {}
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// Waits for the next call to arrive (one not yet waited for).
    pub async fn next_call(&mut self, deadline: Duration) -> NotifyCall {
        tokio::time::timeout(deadline, self.arrived.recv())
            .await
            .unwrap_or_else(|_| panic!("no Notify call within {deadline:?}"))
            .expect("server alive")
    }

    /// Says that the person pressed the button `action_key` on notification
    /// `id`.
    pub async fn invoke_action(&self, id: u32, action_key: &str) {
        let iface = self
            .connection
            .object_server()
            .interface::<_, Notifications>(OBJECT_PATH)
            .await
            .unwrap();
        Notifications::action_invoked(iface.signal_emitter(), id, action_key)
            .await
            .unwrap();
    }
}
