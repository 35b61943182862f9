//! `hotpool`: the daemon and its operator commands.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand};
use hotpool::{
    api::version::LONG_VERSION,
    config::Config,
    daemon::{self, RunOptions},
    logs::{self, LogFormat},
};

#[derive(Parser)]
#[command(
    name = "hotpool",
    version = LONG_VERSION,
    about = "XDP-accelerated authoritative DNS for steered pools"
)]
struct Cli {
    /// Log format (logs go to stderr; colour only on a terminal; HOTPOOL_LOG sets the
    /// filter, e.g. debug or hotpool=debug).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
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
    },
    /// Validate a configuration file (and its zone files) and print a summary.
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
    /// Print the man page (roff), or write one per command into a directory.
    Man {
        /// Write hotpool.1 and hotpool-<command>.1 into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print a shell completion script (e.g. `hotpool completions bash >
    /// /etc/bash_completion.d/hotpool`).
    Completions {
        /// bash, elvish, fish, powershell or zsh.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logs::init(cli.log_format);
    let result = match cli.command {
        Command::Check { config } => Config::load(&config)
            .map_err(anyhow::Error::from)
            .and_then(|cfg| out(&cfg.summary())),
        Command::Run { config, no_xdp } => match Config::load(&config) {
            Ok(cfg) => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(daemon::run(cfg, RunOptions { no_xdp }))),
            Err(e) => Err(e.into()),
        },
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
        Command::Status { api } => api_request(api, "GET", "/api/status").map(|b| print!("{b}")),
        Command::Man { dir } => man(dir.as_deref()),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "hotpool", &mut script);
            out(&String::from_utf8_lossy(&script))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hotpool: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing the man pages to {}", dir.display()))
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            out(&String::from_utf8_lossy(&page))
        }
    }
}

fn print_stats(pin_path: &Path) -> anyhow::Result<()> {
    let mut text = String::new();
    for (outcome, n) in hotpool::datapath::hot::read_pinned_stats(pin_path)? {
        text.push_str(&format!("{:<14} {n}\n", outcome.name()));
    }
    out(&text)
}

/// Writes to stdout; a reader that went away (`| head`) is no error.
fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::from(e).context("writing to stdout"))
        }
        _ => Ok(()),
    }
}

/// One request to the daemon's HTTP endpoint; the body on 2xx, an error with it otherwise.
fn api_request(api: std::net::SocketAddr, method: &str, path: &str) -> anyhow::Result<String> {
    use std::io::Read as _;

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
