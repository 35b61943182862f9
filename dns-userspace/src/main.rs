//! `hotpool`: the daemon and its operator commands.

use std::{
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, Parser, Subcommand};
use hotpool::{
    api::{
        client::{Client, Target},
        status::StatusDoc,
        version::LONG_VERSION,
    },
    config::Config,
    daemon::{self, RunOptions},
    logs::{self, LogFormat},
};

/// Where the daemon's config is looked for when `--config` is not given.
const DEFAULT_CONFIG: &str = "/etc/hotpool/hotpool.toml";
/// The API address tried when neither a config nor an address is given.
const DEFAULT_API: &str = "127.0.0.1:9153";

#[derive(Parser)]
#[command(
    name = "hotpool",
    version = LONG_VERSION,
    about = "XDP-accelerated authoritative DNS for steered pools",
    long_about = "XDP-accelerated authoritative DNS for steered pools: the hot pool names are \
                  answered by an XDP program in the kernel, everything else by the daemon. \
                  `hotpool run` runs the daemon; `status` and `endpoint` talk to a running one \
                  through its API ([api] in the config)."
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
    /// Pin an endpoint of a running daemon up or down, or make it follow its probes again.
    Endpoint {
        /// The pool's name, e.g. www.example.test.
        pool: String,
        /// The endpoint's address (or host name in a CNAME pool).
        endpoint: String,
        /// up (always_on), down (always_off) or follow (follow_sonar).
        state: String,
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// Show every pool's answer, why, since when, and its endpoints, from a running daemon.
    Status {
        /// The status as JSON (the API's document) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        daemon: DaemonArgs,
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

/// How to find a running daemon.
#[derive(Args)]
struct DaemonArgs {
    /// The daemon's config file: its [api] section says where the API listens (Unix socket
    /// first, then TCP) and where the token is. Default /etc/hotpool/hotpool.toml if it
    /// exists, else 127.0.0.1:9153.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// The API's TCP address, instead of the config's.
    #[arg(long)]
    api: Option<SocketAddr>,
    /// The API's Unix socket, instead of the config's.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The file holding the API token, instead of the config's api.token_file.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl DaemonArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let config = self.config.clone().or_else(|| {
            let default = Path::new(DEFAULT_CONFIG);
            default.exists().then(|| default.to_path_buf())
        });
        let settings = match &config {
            Some(path) => Some((Config::load_api(path)?, path)),
            None => None,
        };
        let mut client = if self.api.is_some() || self.socket.is_some() {
            let mut targets = Vec::new();
            if let Some(socket) = &self.socket {
                targets.push(Target::Unix(socket.clone()));
            }
            if let Some(addr) = self.api {
                targets.push(Target::Tcp(addr));
            }
            let mut client = Client::new(targets, None);
            if let Some(file) = settings.as_ref().and_then(|(s, _)| s.token_file.as_ref()) {
                client.use_token_file(file);
            }
            client
        } else {
            match &settings {
                Some((settings, path)) => Client::from_settings(settings, path)?,
                None => {
                    let addr = DEFAULT_API.parse().context("the default API address")?;
                    Client::new(vec![Target::Tcp(addr)], None)
                }
            }
        };
        if let Some(file) = &self.token_file {
            client.use_token_file(file);
        }
        Ok(client)
    }
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
            daemon,
        } => set_endpoint(&daemon, &pool, &endpoint, &state),
        Command::Status { json, daemon } => status(&daemon, json),
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

/// Runs one request to the daemon on a small runtime.
fn ask<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(f)
}

fn set_endpoint(
    daemon: &DaemonArgs,
    pool: &str,
    endpoint: &str,
    state: &str,
) -> anyhow::Result<()> {
    hotpool::steering::health::parse_admin(state)?;
    let client = daemon.client()?;
    let body = ask(async {
        Ok(client
            .post(&["api", "pools", pool, "endpoints", endpoint, state])
            .await?)
    })?;
    out(&format!("{}\n", body["ok"].as_str().unwrap_or("done")))
}

fn status(daemon: &DaemonArgs, json: bool) -> anyhow::Result<()> {
    let client = daemon.client()?;
    let body = ask(async { Ok(client.get(&["api", "status"]).await?) })?;
    if json {
        return out(&format!("{}\n", serde_json::to_string_pretty(&body)?));
    }
    let doc: StatusDoc = serde_json::from_value(body).with_context(|| {
        let at = client
            .target()
            .map_or(String::new(), |t| format!(" at {t}"));
        format!(
            "the status from the daemon{at} has another form (another hotpool version?); try --json"
        )
    })?;
    out(&doc.table())
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
