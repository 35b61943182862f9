//! The `hotpool` binary as an operator runs it, inside a test's server namespace: a scratch
//! directory with its config and zone (removed on drop), the running daemon (killed on
//! drop), and one-shot commands (`check`, `reload`, `detach`).

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{daemon::answers_tcp, netns::Link};

/// `target/debug/hotpool` (`cargo xtask test` builds it before the tests run).
pub fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/hotpool");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask test` (or `cargo build -p dns-userspace --bin hotpool`)",
        bin.display()
    );
    bin
}

/// A zone for the process tests: example.test. with an SOA, NS and one A record.
pub const ZONE: &str = "\
$ORIGIN example.test.
$TTL 3600
@    IN SOA ns1 hostmaster 1 3600 600 604800 60
@    IN NS  ns1
ns1  IN A   192.0.2.53
";

/// A scratch directory with `hotpool.toml` and `example.test.zone`, removed on drop.
pub struct Files {
    pub dir: PathBuf,
}

impl Files {
    /// The directory [`Files::new`] makes for `tag` (for configs that name files in it).
    pub fn dir_for(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("hotpool-proc-{tag}-{}", std::process::id()))
    }

    pub fn new(tag: &str, config: &str) -> Self {
        let dir = Self::dir_for(tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("example.test.zone"), ZONE).unwrap();
        std::fs::write(dir.join("hotpool.toml"), crate::own_state(config, &dir)).unwrap();
        Self { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("hotpool.toml")
    }

    /// Replaces the config file.
    pub fn write_config(&self, config: &str) {
        std::fs::write(self.config(), crate::own_state(config, &self.dir)).unwrap();
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn in_namespace(link: &Link) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/var/run/netns/{}", link.server.name))
        .arg(binary());
    c
}

/// `hotpool <args>` in the server's namespace, to completion.
pub fn hotpool(link: &Link, args: &[&str]) -> Output {
    in_namespace(link)
        .args(args)
        .output()
        .expect("running hotpool")
}

/// `hotpool run` inside the server's network namespace, stderr kept in a file. `nsenter
/// --net` (which execs it, so the child's pid is the daemon's) switches only the network
/// namespace; `ip netns exec` would also give it a private /sys, and with it a private
/// bpffs whose pins vanish with the process.
pub struct Running {
    pub child: Child,
    pub log: PathBuf,
}

impl Running {
    /// Starts it and waits until it answers.
    pub fn start(link: &Link, files: &Files, extra: &[&str], log_name: &str) -> Self {
        let mut r = Self::spawn(link, files, extra, log_name);
        r.wait_answering(link);
        r
    }

    /// Starts it with an open-file limit of `nofile` (soft and hard) and waits until it
    /// answers.
    pub fn start_with_nofile(
        link: &Link,
        files: &Files,
        extra: &[&str],
        log_name: &str,
        nofile: u64,
    ) -> Self {
        let mut r = Self::spawn_with(link, files, extra, log_name, Some(nofile));
        r.wait_answering(link);
        r
    }

    /// Starts it without waiting.
    pub fn spawn(link: &Link, files: &Files, extra: &[&str], log_name: &str) -> Self {
        Self::spawn_with(link, files, extra, log_name, None)
    }

    fn spawn_with(
        link: &Link,
        files: &Files,
        extra: &[&str],
        log_name: &str,
        nofile: Option<u64>,
    ) -> Self {
        let log = files.dir.join(log_name);
        let stderr = std::fs::File::create(&log).unwrap();
        let mut command = in_namespace(link);
        command
            .args(["run", "--config"])
            .arg(files.config())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(nofile) = nofile {
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                command.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: nofile,
                        rlim_max: nofile,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().expect("spawning hotpool");
        Self { child, log }
    }

    pub fn wait_answering(&mut self, link: &Link) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // "hotpool running" is logged once XDP is set up (or given up on).
            if answers_tcp(link) && self.log().contains("hotpool running") {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("hotpool exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "hotpool did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for it to exit on its own (e.g. a broken config): (success, log).
    pub fn wait_exit(mut self) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.success(), self.log());
            }
            assert!(Instant::now() < deadline, "hotpool did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` (without waiting).
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Sends `signal` and waits for a clean exit; the log.
    pub fn stop(mut self, signal: i32) -> String {
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "hotpool exited with {status}:\n{}",
                    self.log()
                );
                return self.log();
            }
            assert!(Instant::now() < deadline, "hotpool ignored signal {signal}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, and waits until it is gone.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an XDP program is attached to the server end of `link`.
pub fn xdp_attached(link: &Link) -> bool {
    let out = link
        .server
        .exec_ok(&["ip", "-d", "link", "show", "dev", &link.server_if]);
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}
