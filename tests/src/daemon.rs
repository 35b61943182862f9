//! The daemon run in-process on a thread inside a test's server namespace, with its own
//! config directory and pin directory, stopped and cleaned up on drop.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use dns_common::Outcome;
use hickory_proto::rr::RecordType;
use hotpool::{
    config::Config,
    daemon::{self, RunOptions},
    datapath::hot::read_pinned_stats,
};

use crate::{client, netns::Link};

/// The API token in every test daemon's `api.token` (configs refer to it as
/// `token_file = "{dir}/api.token"`).
pub const API_TOKEN: &str = "hotpool-test-token-0123456789";

/// A zone for the tests: example.test. with an SOA, NS and one A record.
pub const ZONE: &str = "\
$ORIGIN example.test.
$TTL 3600
@       IN SOA ns1.example.test. hostmaster.example.test. 2026112201 3600 600 604800 60
@       IN NS  ns1.example.test.
ns1     IN A   192.0.2.53
mail    IN A   192.0.2.25
@       IN MX  10 mail.example.test.
";

pub struct Daemon {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    pub pin: PathBuf,
    pub dir: PathBuf,
}

impl Daemon {
    /// Writes `zones/example.test.zone` and `hotpool.toml` (from `config`, in which
    /// `{pin}` and `{dir}` are replaced by the pin and config directories) and starts the
    /// daemon in `link.server`; returns once it answers over TCP and, when `xdp`, its
    /// program is attached.
    pub fn start(link: &Link, config: &str, xdp: bool) -> Self {
        let tag = format!("{}-{}", std::process::id(), link.server_if);
        let dir = std::env::temp_dir().join(format!("hotpool-e2e-{tag}"));
        std::fs::create_dir_all(dir.join("zones")).unwrap();
        std::fs::write(dir.join("zones/example.test.zone"), ZONE).unwrap();
        write_private(&dir.join("api.token"), API_TOKEN);
        let pin = PathBuf::from(format!("/sys/fs/bpf/hotpool-e2e-{tag}"));
        // Pins a killed run with the same process id left behind.
        let _ = std::fs::remove_dir_all(&pin);
        let text = crate::own_state(
            &config
                .replace("{pin}", &pin.display().to_string())
                .replace("{dir}", &dir.display().to_string()),
            &dir,
        );
        let path = dir.join("hotpool.toml");
        std::fs::write(&path, text).unwrap();
        let cfg = Config::load(&path).unwrap_or_else(|e| panic!("test config: {e}"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = link.server.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(daemon::run_until(cfg, RunOptions::default(), async move {
                let _ = rx.await;
                Ok(())
            }))
        });
        let mut d = Self {
            stop: Some(tx),
            handle: Some(handle),
            pin,
            dir,
        };
        d.wait_ready(link, xdp);
        d
    }

    fn wait_ready(&mut self, link: &Link, xdp: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if answers_tcp(link) && (!xdp || xdp_attached(link)) {
                return;
            }
            if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
                let why = match self.handle.take().map(|h| h.join()) {
                    Some(Ok(Err(e))) => format!("{e:#}"),
                    Some(Ok(Ok(()))) => "it returned".to_string(),
                    Some(Err(_)) => "it panicked".to_string(),
                    None => String::new(),
                };
                panic!("the daemon exited during start-up: {why}");
            }
            assert!(Instant::now() < deadline, "the daemon did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The XDP counters from the pinned stats map.
    pub fn stats(&self) -> Vec<(Outcome, u64)> {
        read_pinned_stats(&self.pin).expect("reading the pinned stats")
    }

    /// A file in the config directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Stops the daemon and asserts it exited cleanly.
    pub fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("daemon thread")
            .expect("daemon exits cleanly");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_dir_all(&self.pin);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `text` to `path`, readable by its owner only (as a token file must be).
pub fn write_private(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Whether a daemon on the server end of `link` answers a zone query over TCP from the
/// client namespace (TCP: the kernel never answers it, so this is the daemon itself).
pub fn answers_tcp(link: &Link) -> bool {
    let server = SocketAddr::new(IpAddr::V4(link.server_v4), 53);
    link.client.run(move || {
        client::tcp(
            server,
            &client::query("ns1.example.test.", RecordType::A, false),
            Duration::from_millis(300),
        )
        .is_ok()
    })
}

/// Whether an XDP program is attached to the server end of `link`.
pub fn xdp_attached(link: &Link) -> bool {
    let out = link
        .server
        .exec_ok(&["ip", "-d", "link", "show", "dev", &link.server_if]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// Counter difference for one outcome.
pub fn delta(before: &[(Outcome, u64)], after: &[(Outcome, u64)], o: Outcome) -> u64 {
    after[o as usize].1 - before[o as usize].1
}

/// Queries answered by the kernel between two snapshots, whichever way the frame grew
/// (`hit` at the tail, `hit_headroom` into the headroom).
pub fn answered(before: &[(Outcome, u64)], after: &[(Outcome, u64)]) -> u64 {
    Outcome::ALL
        .iter()
        .filter(|o| o.answered())
        .map(|&o| delta(before, after, o))
        .sum()
}
