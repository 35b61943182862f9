//! `hotpool`: the daemon and its operator commands.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use hotpool::{
    config::Config,
    daemon::{self, RunOptions},
    datapath::ebpf::Replace,
};
use tracing_subscriber::{EnvFilter, fmt};

#[derive(Parser)]
#[command(
    name = "hotpool",
    version,
    about = "XDP-accelerated authoritative DNS for steered pools"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReplaceProgram {
    Program,
    Maps,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_NET_BIND_SERVICE, for XDP).
    Run {
        /// The configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Serve everything from userspace; do not load the XDP program.
        #[arg(long)]
        no_xdp: bool,
        /// Swap this program in through the pinned link even when the attached one is the
        /// same (`program`), also with fresh maps (`maps`): tests of the upgrade path.
        #[arg(long, value_enum, hide = true)]
        replace_program: Option<ReplaceProgram>,
    },
    /// Remove the XDP program from its interfaces: detach its pinned links and remove their
    /// pins (the maps stay pinned). The daemon leaves the program attached when it exits, so
    /// queries keep being answered through restarts and crashes; this is how it goes away.
    Detach {
        /// Read `server.pin_path` from this configuration file.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// The pin directory (default: from --config, else /sys/fs/bpf/hotpool).
        #[arg(long, conflicts_with = "config")]
        pin_path: Option<PathBuf>,
        /// Only when systemd is stopping the unit (`ExecStopPost=`): not when it restarts it,
        /// after a crash or after a failed start.
        #[arg(long)]
        if_stopping: bool,
        /// The unit `--if-stopping` asks systemd about (`%n` in the unit file).
        #[arg(long, default_value = "hotpool.service")]
        unit: String,
    },
    /// Validate a configuration file (and its zone files), print a summary, and check what
    /// `run` needs of this host as this user: its addresses can be bound, its event log and
    /// state file written.
    Check {
        /// The configuration file.
        config: PathBuf,
    },
    /// Pin an endpoint of a running daemon up or down, or make it follow its probes again
    /// (through the daemon's HTTP endpoint, `server.metrics_listen`).
    Endpoint {
        /// The pool's name, e.g. www.example.test.
        pool: String,
        /// The endpoint's address (or host name in a CNAME pool).
        endpoint: String,
        /// up (always_on), down (always_off) or follow (follow_sonar).
        state: String,
        /// The daemon's metrics/API address.
        #[arg(long, default_value = "127.0.0.1:9153")]
        api: std::net::SocketAddr,
    },
    /// Make the running daemon re-read its config file and zone files and apply them, as
    /// SIGHUP does (through its HTTP endpoint, `server.metrics_listen`). Exits non-zero with
    /// the reason when the daemon keeps its running configuration.
    Reload {
        /// The configuration file (its `server.metrics_listen` finds the daemon).
        #[arg(short, long)]
        config: PathBuf,
        /// The daemon's metrics/API address, instead of the config's.
        #[arg(long)]
        api: Option<std::net::SocketAddr>,
    },
    /// Show every pool's answer and endpoint states from a running daemon.
    Status {
        /// The daemon's metrics/API address.
        #[arg(long, default_value = "127.0.0.1:9153")]
        api: std::net::SocketAddr,
    },
    /// Print the XDP program's counters from the pinned stats map of a running daemon.
    Stats {
        /// The pin directory (`server.pin_path` in the config).
        #[arg(long, default_value = dns_common::DEFAULT_PIN_PATH)]
        pin_path: PathBuf,
    },
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("HOTPOOL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Run {
            config,
            no_xdp,
            replace_program,
        } => {
            let replace = match replace_program {
                None => Replace::IfChanged,
                Some(ReplaceProgram::Program) => Replace::Program,
                Some(ReplaceProgram::Maps) => Replace::Maps,
            };
            run(&config, RunOptions { no_xdp, replace })
        }
        Command::Detach {
            config,
            pin_path,
            if_stopping,
            unit,
        } => detach(config, pin_path, if_stopping.then_some(unit.as_str())),
        Command::Stats { pin_path } => print_stats(&pin_path),
        Command::Endpoint {
            pool,
            endpoint,
            state,
            api,
        } => hotpool::steering::health::parse_admin(&state)
            .map_err(anyhow::Error::from)
            .and_then(|_| {
                let path = format!("/api/pools/{pool}/endpoints/{endpoint}/{state}");
                api_request(api, "POST", &path).map(|body| print!("{body}"))
            }),
        Command::Reload { config, api } => reload(&config, api),
        Command::Status { api } => api_request(api, "GET", "/api/status").map(|b| print!("{b}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hotpool: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `hotpool check`: the config and its zones, then what `run` needs of this host.
fn check(config: &std::path::Path) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    print!("{}", cfg.summary());
    let (text, fails) = daemon::preflight::report(&daemon::preflight::check(&cfg));
    print!("{text}");
    if fails {
        anyhow::bail!(
            "{}: `hotpool run` would fail here (see the checks above)",
            config.display()
        );
    }
    Ok(())
}

/// `hotpool run`: SIGHUP is harmless from the first moment (a reload once running).
fn run(config: &std::path::Path, opts: RunOptions) -> anyhow::Result<()> {
    daemon::ignore_hangups();
    let cfg = Config::load(config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(daemon::run(cfg, opts))
}

fn detach(
    config: Option<PathBuf>,
    pin_path: Option<PathBuf>,
    if_stopping: Option<&str>,
) -> anyhow::Result<()> {
    let default = || PathBuf::from(dns_common::DEFAULT_PIN_PATH);
    let pin_path = match (pin_path, config) {
        (Some(p), _) => p,
        // A config broken beyond reading must not keep `systemctl stop` from detaching.
        (None, Some(c)) => Config::peek(&c).map(|p| p.pin_path).unwrap_or_else(|e| {
            eprintln!("hotpool: {e}; using the default pin path");
            default()
        }),
        (None, None) => default(),
    };
    print!("{}", daemon::detach::run(&pin_path, if_stopping)?);
    Ok(())
}

fn reload(config: &std::path::Path, api: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let api = match api {
        Some(a) => a,
        None => Config::peek(config)?.metrics_listen.ok_or_else(|| {
            anyhow::anyhow!(
                "{} sets no server.metrics_listen, so the daemon cannot be asked; send it SIGHUP \
                 instead (systemctl reload hotpool, or kill -HUP)",
                config.display()
            )
        })?,
    };
    let message = |body: &str, key: &str| {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get(key).and_then(|m| m.as_str()).map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string())
    };
    match api_request(api, "POST", "/api/reload") {
        Ok(body) => {
            println!("{}", message(&body, "ok"));
            Ok(())
        }
        Err(e) => {
            let text = format!("{e:#}");
            // "HTTP/1.1 422 ...: {body}" from the daemon; anything else is our own error.
            match text.split_once(": ") {
                Some((status, body)) if status.starts_with("HTTP/") => {
                    anyhow::bail!("reload failed: {}", message(body, "error"))
                }
                _ => Err(e),
            }
        }
    }
}

fn print_stats(pin_path: &std::path::Path) -> anyhow::Result<()> {
    for (outcome, n) in hotpool::datapath::hot::read_pinned_stats(pin_path)? {
        println!("{:<14} {n}", outcome.name());
    }
    Ok(())
}

/// One request to the daemon's HTTP endpoint; the body on 2xx, an error with it otherwise.
fn api_request(api: std::net::SocketAddr, method: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};

    use anyhow::Context as _;
    let timeout = std::time::Duration::from_secs(5);
    let mut conn = std::net::TcpStream::connect_timeout(&api, timeout).with_context(|| {
        format!("connecting to the daemon at {api} (is `server.metrics_listen` set to it?)")
    })?;
    conn.set_read_timeout(Some(timeout))?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(request.as_bytes())?;
    let mut resp = String::new();
    conn.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.lines().next().unwrap_or_default();
    if status
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2'))
    {
        Ok(body.to_string())
    } else {
        anyhow::bail!("{status}: {}", body.trim())
    }
}
