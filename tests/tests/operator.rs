//! The operator's side of the `hotpool` binary: its logs (no colour into a pipe, values for
//! people, JSON arrays), `status` and `endpoint` finding the daemon from its config and
//! printing clean errors, and `check` refusing an exposed API without a token.
//!
//! Each test runs the daemon in its own network namespace (`nsenter --net`), listening on
//! that namespace's loopback, without XDP; the CLI runs there too.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use hotpool_tests::{
    daemon::{API_TOKEN, write_private},
    netns::NetNs,
    process::{ZONE, binary},
};

/// A daemon's files: config, zone, token, and its pin directory; removed on drop.
struct Files {
    dir: PathBuf,
    pin: PathBuf,
    /// Attach XDP to the namespace's `lo` in generic mode.
    xdp: bool,
}

impl Files {
    fn new(tag: &str, xdp: bool) -> Self {
        let id = format!("{tag}-{}", std::process::id());
        let dir = std::env::temp_dir().join(format!("hotpool-op-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("example.test.zone"), ZONE).unwrap();
        write_private(&dir.join("api.token"), API_TOKEN);
        let pin = PathBuf::from(format!("/sys/fs/bpf/hotpool-op-{id}"));
        let f = Self { dir, pin, xdp };
        std::fs::write(f.config(), f.text()).unwrap();
        f
    }

    fn config(&self) -> PathBuf {
        self.dir.join("hotpool.toml")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }

    /// A probed pool with one endpoint that answers (the API itself) and one that does
    /// not (127.0.0.2 refuses), and a static one.
    fn text(&self) -> String {
        format!(
            r#"[server]
listen = ["127.0.0.1"]
pin_path = "{pin}"
{xdp}
[api]
listen = "127.0.0.1:9153"
token_file = "api.token"
unix_socket = "{socket}"

[state]
path = "state.json"

[[zone]]
origin = "example.test."
file = "example.test.zone"

[[pool]]
name = "www.example.test."
type = "A"
probe = {{ kind = "tcp", port = 9153, interval = "250ms", timeout = "200ms", rise = 1, fall = 1 }}
endpoints = [{{ address = "127.0.0.1" }}, {{ address = "127.0.0.2" }}]

[[pool]]
name = "fixed.example.test."
type = "A"
endpoints = [{{ address = "192.0.2.10" }}, {{ address = "192.0.2.11" }}]
"#,
            socket = self.socket().display(),
            pin = self.pin.display(),
            xdp = if self.xdp {
                "\n[xdp]\ninterfaces = [\"lo\"]\nmode = \"generic\"\n"
            } else {
                ""
            },
        )
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.pin);
    }
}

/// `hotpool run` in `ns`, stderr to a pipe read line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(ns: &NetNs, files: &Files, extra: &[&str]) -> Self {
        let mut child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", ns.name))
            .arg(binary())
            .args(extra)
            .args(["run", "--config"])
            .arg(files.config())
            .env_remove("NO_COLOR")
            .env("HOTPOOL_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning hotpool");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut r = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        r.wait_for("hotpool running");
        r
    }

    /// Reads log lines until one contains `text`; returns it.
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {text:?} within 20 s:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CLI in `ns` with `args`.
fn cli(ns: &NetNs, args: &[&str]) -> Output {
    Command::new("nsenter")
        .arg(format!("--net=/var/run/netns/{}", ns.name))
        .arg(binary())
        .args(args)
        .output()
        .expect("running hotpool")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn text_logs_into_a_pipe_have_no_colour_and_no_debug_values() {
    let ns = NetNs::new("logtext");
    let files = Files::new("logtext", true);
    let mut d = Running::start(&ns, &files, &[]);
    let running = d.wait_for("hotpool running");
    assert!(running.contains("listen=[127.0.0.1]"), "{running}");
    let attached = d.wait_for("XDP program attached");
    assert!(
        attached.contains("mode=generic") && !attached.contains("Skb"),
        "{attached}"
    );
    // An endpoint verdict with its latency figures.
    let up = d.wait_for("endpoint state changed");
    assert!(up.contains("samples_ms=["), "{up}");
    let log = d.seen.join("\n");
    assert!(!log.contains('\u{1b}'), "ANSI escapes into a pipe:\n{log}");
    assert!(!log.contains("Some("), "Rust Debug in the log:\n{log}");
    assert!(
        !log.contains("aya_obj"),
        "aya's debug output stays filtered at HOTPOOL_LOG=debug:\n{log}"
    );
    assert!(
        log.contains("DEBUG"),
        "HOTPOOL_LOG=debug applies to hotpool:\n{log}"
    );
}

#[test]
fn json_logs_have_arrays() {
    let ns = NetNs::new("logjson");
    let files = Files::new("logjson", false);
    let mut d = Running::start(&ns, &files, &["--log-format", "json"]);
    let running = d.wait_for("hotpool running");
    let line: serde_json::Value =
        serde_json::from_str(&running).unwrap_or_else(|e| panic!("{e}: {running}"));
    assert_eq!(
        line["fields"]["listen"],
        serde_json::json!(["127.0.0.1"]),
        "{line}"
    );
    assert_eq!(line["fields"]["port"], 53, "{line}");
    let up = d.wait_for("endpoint state changed");
    let line: serde_json::Value = serde_json::from_str(&up).unwrap();
    let samples = line["fields"]["samples_ms"]
        .as_array()
        .unwrap_or_else(|| panic!("samples_ms is an array: {line}"));
    assert!(samples.iter().all(serde_json::Value::is_number), "{line}");
    for l in &d.seen {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "not JSON: {l}"
        );
    }
}

#[test]
fn status_and_endpoint_find_the_daemon_from_its_config() {
    let ns = NetNs::new("cli");
    let files = Files::new("cli", false);
    let config = files.config().display().to_string();
    let mut d = Running::start(&ns, &files, &[]);
    d.wait_for("pool answer changed pool=www.example.test.");
    // The first change may still be provisional (127.0.0.2 known down before 127.0.0.1's
    // first verdict): wait for the policy's own answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let table = loop {
        let out = cli(&ns, &["status", "--config", &config]);
        assert!(out.status.success(), "{}", stderr(&out));
        let table = stdout(&out);
        if table.contains("  reason  fastest: ") || Instant::now() > deadline {
            break table;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(table.starts_with("hotpool "), "{table}");
    assert!(table.contains("staleness: n/a"), "{table}");
    assert!(
        table.contains("\nwww.example.test. A (fastest)\n"),
        "{table}"
    );
    assert!(
        table.contains("  reason  fastest: 127.0.0.1 at "),
        "{table}"
    );
    let refused = table
        .lines()
        .find(|l| l.trim_start().starts_with("127.0.0.2"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(refused.contains("connection refused"), "{refused}");

    let out = cli(&ns, &["status", "--json", "--config", &config]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let latency = &doc["pools"][0]["endpoints"][0]["latency_ms"];
    let text = latency.to_string();
    assert!(
        text.split('.').nth(1).is_none_or(|d| d.len() <= 3),
        "rounded: {text}"
    );

    // Over the socket (the config names it first), no token needed.
    let out = cli(
        &ns,
        &[
            "endpoint",
            "--config",
            &config,
            "fixed.example.test",
            "192.0.2.10",
            "down",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "192.0.2.10 in fixed.example.test is now down\n"
    );
    // Over TCP with the config's token; without it, a clean refusal.
    let with_token = cli(
        &ns,
        &[
            "endpoint",
            "--api",
            "127.0.0.1:9153",
            "--config",
            &config,
            "fixed.example.test",
            "192.0.2.10",
            "follow",
        ],
    );
    assert!(with_token.status.success(), "{}", stderr(&with_token));
    let without = cli(
        &ns,
        &[
            "endpoint",
            "--api",
            "127.0.0.1:9153",
            "fixed.example.test",
            "192.0.2.10",
            "down",
        ],
    );
    assert!(!without.status.success());
    assert_eq!(
        stderr(&without),
        "hotpool: the daemon at 127.0.0.1:9153 refused: this needs the API token: send \
         Authorization: Bearer <the token in api.token_file> (give the config with \
         api.token_file: --config, or --token-file)\n"
    );

    // Unknown names: what the daemon has instead.
    let out = cli(
        &ns,
        &[
            "endpoint",
            "--config",
            &config,
            "nope.example.test",
            "192.0.2.10",
            "down",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        format!(
            "hotpool: no pool nope.example.test (the daemon at {} has: www.example.test., \
             fixed.example.test.)\n",
            files.socket().display()
        )
    );
    let out = cli(
        &ns,
        &[
            "endpoint",
            "--config",
            &config,
            "fixed.example.test",
            "192.0.2.99",
            "down",
        ],
    );
    assert!(
        stderr(&out).contains("has no endpoint 192.0.2.99 (the daemon at")
            && stderr(&out).contains("has: 192.0.2.10, 192.0.2.11)"),
        "{}",
        stderr(&out)
    );
    let out = cli(
        &ns,
        &[
            "endpoint",
            "--config",
            &config,
            "fixed.example.test",
            "192.0.2.10",
            "sideways",
        ],
    );
    assert_eq!(
        stderr(&out),
        "hotpool: unknown endpoint state \"sideways\" (up, down or follow)\n"
    );
}

#[test]
fn an_unreachable_daemon_is_a_clean_error() {
    let ns = NetNs::new("noapi");
    let files = Files::new("noapi", false);
    let out = cli(
        &ns,
        &["status", "--config", &files.config().display().to_string()],
    );
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        format!(
            "hotpool: cannot reach the daemon at {}: no such socket; 127.0.0.1:9153: \
             connection refused (is it running? is [api] listen set?)\n",
            files.socket().display()
        )
    );
    let out = cli(&ns, &["status", "--api", "127.0.0.1:9"]);
    assert_eq!(
        stderr(&out),
        "hotpool: cannot reach the daemon at 127.0.0.1:9: connection refused (is it \
         running? is [api] listen set?)\n"
    );
}

#[test]
fn check_refuses_an_exposed_api_without_a_token() {
    let files = Files::new("exposed", false);
    std::fs::write(
        files.config(),
        "[server]\nlisten = [\"127.0.0.1\"]\n\n[api]\nlisten = \"0.0.0.0:9153\"\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg(files.config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("hotpool: {}:5:10: ", files.config().display())),
        "{err}"
    );
    assert!(
        err.contains("0.0.0.0:9153, which is not a loopback address, without a token"),
        "{err}"
    );
    // The same with a token file is fine.
    std::fs::write(
        files.config(),
        "[server]\nlisten = [\"127.0.0.1\"]\n\n[api]\nlisten = \"0.0.0.0:9153\"\ntoken_file = \"api.token\"\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("check")
        .arg(files.config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("api: http://0.0.0.0:9153/"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn version_man_page_and_completions() {
    let out = Command::new(binary()).arg("--version").output().unwrap();
    let version = stdout(&out);
    assert!(
        version.starts_with(&format!("hotpool {} (git ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    let out = Command::new(binary()).arg("man").output().unwrap();
    assert!(out.status.success());
    let page = stdout(&out);
    assert!(page.contains(".TH hotpool 1"), "{page}");
    assert!(page.contains("status"), "{page}");
    let out = Command::new(binary())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("complete -F _hotpool"),
        "{}",
        stdout(&out)
    );
}
