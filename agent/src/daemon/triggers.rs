//! What makes the daemon check at once instead of waiting for the next
//! interval: a file a rule reads changes, the agent's config file changes,
//! or a USB or block device comes or goes (a kernel uevent on Linux).
//!
//! Both sources only *send* [`Trigger`]s into a bounded channel; the daemon
//! loop debounces them (an editor saving a file, or a USB stick appearing as
//! device, interfaces and disks, makes a burst of events) and runs one cycle
//! for the burst. A full channel drops the trigger: a cycle is pending
//! anyway, and a flood of events must not grow memory.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use crate::sys::{Host, Uevent};

/// Quiet time after the last event of a burst before the cycle runs. Long
/// enough for an editor's write-rename-chmod or a USB stick's cascade of
/// device, interface and disk events; short enough that a change is checked
/// well within a second.
pub const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(200);

/// Room for a burst between two reads of the daemon loop; beyond it,
/// triggers are dropped (a cycle is already due).
pub const CHANNEL_CAPACITY: usize = 64;

/// Why the daemon should look again now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A file or directory a rule reads changed.
    FileChanged(PathBuf),
    /// The agent's own config file changed: reload it.
    ConfigChanged,
    /// The kernel announced a device change.
    Device(Uevent),
}

// ---------------------------------------------------------------------------
// Files

/// Watches the files the rules read, and the config file. Dropping it stops
/// the watching.
#[derive(Debug)]
pub struct FileWatch {
    watcher: notify::RecommendedWatcher,
    /// Targets as paths under the host root, each with whether it is the
    /// config file.
    targets: Vec<(PathBuf, bool)>,
    /// The directories currently watched, so [`FileWatch::refresh`] can move
    /// a watch down to a directory that has appeared.
    watched: Vec<(PathBuf, notify::RecursiveMode)>,
}

impl FileWatch {
    /// Starts watching `paths` (absolute paths as the rules name them, read
    /// under `host`'s root) and `config_file`. A path that does not exist yet
    /// is watched through its nearest existing parent, so its creation is
    /// seen too.
    pub fn start(
        host: &Host,
        paths: &[&str],
        config_file: Option<&Path>,
        triggers: mpsc::Sender<Trigger>,
    ) -> notify::Result<Self> {
        let mut targets: Vec<(PathBuf, bool)> =
            paths.iter().map(|p| (host.path(p), false)).collect();
        if let Some(config_file) = config_file {
            targets.push((config_file.to_path_buf(), true));
        }
        let matcher = targets.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else {
                // The watcher's own errors (e.g. inotify queue overflow) mean
                // changes may have been missed: look again to be safe.
                let _ = triggers.try_send(Trigger::FileChanged(PathBuf::new()));
                return;
            };
            if !is_change(&event.kind) {
                return;
            }
            for trigger in event
                .paths
                .iter()
                .filter_map(|path| classify(&matcher, path))
            {
                // Full: a cycle is pending already.
                let _ = triggers.try_send(trigger);
            }
        })?;
        let mut watch = Self {
            watcher,
            targets,
            watched: Vec::new(),
        };
        watch.refresh();
        Ok(watch)
    }

    /// Re-computes where to watch: a target that did not exist may have been
    /// created (then it is watched itself), one that existed may be gone
    /// (then its parent is). Cheap: a handful of `stat`s.
    pub fn refresh(&mut self) {
        use notify::Watcher as _;
        let wanted = watch_points(&self.targets);
        for (dir, mode) in &self.watched {
            if !wanted.contains(&(dir.clone(), *mode)) {
                let _ = self.watcher.unwatch(dir);
            }
        }
        let mut watched = Vec::with_capacity(wanted.len());
        for (dir, mode) in wanted {
            if self.watched.contains(&(dir.clone(), mode)) {
                watched.push((dir, mode));
                continue;
            }
            match self.watcher.watch(&dir, mode) {
                Ok(()) => watched.push((dir, mode)),
                Err(err) => {
                    tracing::warn!(path = %dir.display(), error = %err, "cannot watch; changes there are seen at the next interval")
                }
            }
        }
        self.watched = watched;
    }

    /// The directories being watched, for logs and tests.
    pub fn watched(&self) -> impl Iterator<Item = &Path> {
        self.watched.iter().map(|(dir, _)| dir.as_path())
    }
}

/// Events that change content or presence. Opens and reads are not changes,
/// and must be ignored: the check cycle itself reads these files, and
/// reacting to that would loop for ever.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Which trigger, if any, a changed path is: the config file, or a path at,
/// inside or above (a parent being created) one of the rules' targets.
/// Anything else in a watched parent (say `/etc/hosts` beside
/// `/etc/crypttab`) is ignored.
fn classify(targets: &[(PathBuf, bool)], changed: &Path) -> Option<Trigger> {
    let hit = targets
        .iter()
        .find(|(target, _)| changed.starts_with(target) || target.starts_with(changed))?;
    Some(if hit.1 && changed == hit.0 {
        Trigger::ConfigChanged
    } else {
        Trigger::FileChanged(changed.to_path_buf())
    })
}

/// Where to put watches for `targets`: an existing directory recursively
/// (a rule reads `*.d/` directories), an existing file through its parent
/// (editors replace files by rename, which a watch on the file itself would
/// lose), a missing path through its nearest existing ancestor.
fn watch_points(targets: &[(PathBuf, bool)]) -> Vec<(PathBuf, notify::RecursiveMode)> {
    use notify::RecursiveMode::{NonRecursive, Recursive};
    let mut points: Vec<(PathBuf, notify::RecursiveMode)> = Vec::new();
    for (target, _) in targets {
        let point = if target.is_dir() {
            (target.clone(), Recursive)
        } else {
            let Some(parent) = target.ancestors().skip(1).find(|dir| dir.is_dir()) else {
                continue;
            };
            (parent.to_path_buf(), NonRecursive)
        };
        if !points.contains(&point) {
            points.push(point);
        }
    }
    // A recursive watch covers every watch below it.
    let recursive: Vec<PathBuf> = points
        .iter()
        .filter(|(_, mode)| *mode == Recursive)
        .map(|(dir, _)| dir.clone())
        .collect();
    points.retain(|(dir, mode)| {
        !recursive
            .iter()
            .any(|top| dir.starts_with(top) && (dir != top || *mode == NonRecursive))
    });
    points
}

// ---------------------------------------------------------------------------
// Kernel uevents

/// Listens to kernel uevents on a thread of its own and sends the relevant
/// ones as [`Trigger::Device`], until the receiver is gone. A blocking
/// socket on a plain thread keeps the agent free of `unsafe` (registering a
/// raw descriptor with tokio needs it); the receive timeout lets the thread
/// notice a stopped daemon.
#[cfg(target_os = "linux")]
pub fn listen_uevents(
    triggers: mpsc::Sender<Trigger>,
    senders: UeventSenders,
) -> std::io::Result<UeventListener> {
    use rustix::net::netlink::{self, SocketAddrNetlink};
    use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType, sockopt};

    /// Group 1 is the kernel's own broadcast (group 2 is udev's re-broadcast,
    /// which any root process can forge).
    const KERNEL_GROUP: u32 = 1;
    const POLL: std::time::Duration = std::time::Duration::from_secs(1);

    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::KOBJECT_UEVENT),
    )?;
    rustix::net::bind(&socket, &SocketAddrNetlink::new(0, KERNEL_GROUP))?;
    sockopt::set_socket_timeout(&socket, sockopt::Timeout::Recv, Some(POLL))?;
    let thread = std::thread::Builder::new()
        .name("uevents".into())
        .spawn(move || {
            // Uevents are a few hundred bytes; the kernel caps the
            // environment at 2 KiB plus the header.
            let mut buffer = vec![0u8; 8192];
            while !triggers.is_closed() {
                let (length, sender) =
                    match rustix::net::recvfrom(&socket, &mut buffer[..], RecvFlags::empty()) {
                        Ok((length, _, sender)) => (length, sender),
                        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
                        Err(err) => {
                            // ENOBUFS: the kernel dropped events while we were
                            // busy. Something changed; a cycle looks at all.
                            tracing::debug!(error = %err, "uevent socket");
                            let _ = triggers.try_send(Trigger::FileChanged(PathBuf::new()));
                            continue;
                        }
                    };
                // Only the kernel (port id 0) may speak for the devices.
                let from_kernel = sender
                    .and_then(|address| SocketAddrNetlink::try_from(address).ok())
                    .is_some_and(|address| address.pid() == 0);
                if !from_kernel && senders == UeventSenders::KernelOnly {
                    continue;
                }
                let Some(event) = buffer.get(..length).and_then(Uevent::parse) else {
                    continue;
                };
                if event.is_relevant() && triggers.blocking_send(Trigger::Device(event)).is_err() {
                    return;
                }
            }
        })?;
    Ok(UeventListener { _thread: thread })
}

/// Whose uevents count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UeventSenders {
    /// The live system: only the kernel speaks for its devices.
    KernelOnly,
    /// A host root (tests): its devices are a prepared tree the kernel knows
    /// nothing about, so uevents for them are emulated by a root process
    /// (sending to the kernel's group needs CAP_NET_ADMIN).
    AnyRootProcess,
}

/// The uevent thread; it ends by itself within a second of the daemon
/// dropping the trigger receiver.
#[derive(Debug)]
pub struct UeventListener {
    _thread: std::thread::JoinHandle<()>,
}

/// Other systems: no uevents; device changes are seen at the next interval.
#[cfg(not(target_os = "linux"))]
pub fn listen_uevents(
    _triggers: mpsc::Sender<Trigger>,
    _senders: UeventSenders,
) -> std::io::Result<UeventListener> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "device events are only watched on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(lines: &[&str]) -> Vec<u8> {
        lines.join("\0").into_bytes()
    }

    #[test]
    fn a_kernel_usb_add_is_parsed() {
        // Captured on a Debian 12 laptop with `udevadm monitor --kernel
        // --property` while plugging in a SanDisk stick.
        let event = Uevent::parse(&datagram(&[
            "add@/devices/pci0000:00/0000:00:14.0/usb1/1-2",
            "ACTION=add",
            "DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2",
            "SUBSYSTEM=usb",
            "MAJOR=189",
            "MINOR=3",
            "DEVNAME=bus/usb/001/004",
            "DEVTYPE=usb_device",
            "PRODUCT=781/5581/100",
            "SEQNUM=4391",
        ]))
        .expect("parsed");
        assert!(event.is_usb_device_added());
        assert!(event.is_relevant());
        assert_eq!(
            event.sysfs_path(),
            "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2"
        );
    }

    #[test]
    fn a_change_on_a_block_device_is_relevant_but_not_a_usb_add() {
        let event = Uevent::parse(&datagram(&[
            "change@/devices/virtual/block/loop7",
            "ACTION=change",
            "DEVPATH=/devices/virtual/block/loop7",
            "SUBSYSTEM=block",
            "SYNTH_UUID=0",
            "DEVTYPE=disk",
        ]))
        .expect("parsed");
        assert!(event.is_relevant());
        assert!(!event.is_usb_device_added());
    }

    #[test]
    fn other_subsystems_are_not_relevant() {
        let event = Uevent::parse(&datagram(&[
            "change@/devices/virtual/net/lo",
            "ACTION=change",
            "DEVPATH=/devices/virtual/net/lo",
            "SUBSYSTEM=net",
        ]))
        .expect("parsed");
        assert!(!event.is_relevant());
    }

    #[test]
    fn udev_rebroadcasts_and_malformed_datagrams_are_refused() {
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(Uevent::parse(b""), None);
        assert_eq!(
            Uevent::parse(b"add@/devices/x\0ACTION=add\0SUBSYSTEM=usb"),
            None
        );
        // Header and body disagree.
        assert_eq!(
            Uevent::parse(&datagram(&[
                "add@/devices/a",
                "ACTION=add",
                "DEVPATH=/devices/b",
                "SUBSYSTEM=usb"
            ])),
            None
        );
    }

    #[test]
    fn reads_are_not_changes() {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Read
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
    }

    #[test]
    fn only_targets_and_their_surroundings_trigger() {
        let targets = vec![
            (PathBuf::from("/r/etc/crypttab"), false),
            (PathBuf::from("/r/etc/pam.d"), false),
            (PathBuf::from("/r/etc/palisade/agent.toml"), true),
        ];
        assert_eq!(
            classify(&targets, Path::new("/r/etc/crypttab")),
            Some(Trigger::FileChanged("/r/etc/crypttab".into()))
        );
        assert!(matches!(
            classify(&targets, Path::new("/r/etc/pam.d/common-password")),
            Some(Trigger::FileChanged(_))
        ));
        assert_eq!(classify(&targets, Path::new("/r/etc/hosts")), None);
        assert_eq!(
            classify(&targets, Path::new("/r/etc/palisade/agent.toml")),
            Some(Trigger::ConfigChanged)
        );
        // The parent of a missing target appearing.
        assert!(matches!(
            classify(&targets, Path::new("/r/etc/palisade")),
            Some(Trigger::FileChanged(_))
        ));
    }

    #[test]
    fn watch_points_use_parents_for_files_and_ancestors_for_missing_paths() {
        let root = tempfile::tempdir().expect("tempdir");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(etc.join("pam.d")).expect("mkdir");
        std::fs::write(etc.join("crypttab"), "").expect("write");
        let targets = vec![
            (etc.join("crypttab"), false),
            (etc.join("pam.d"), false),
            (etc.join("dconf/db"), false),
        ];
        let points = watch_points(&targets);
        assert!(points.contains(&(etc.clone(), notify::RecursiveMode::NonRecursive)));
        assert!(points.contains(&(etc.join("pam.d"), notify::RecursiveMode::Recursive)));
        assert_eq!(points.len(), 2, "{points:?}");
    }
}
