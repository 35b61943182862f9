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
        client::{Client, ClientError, Target},
        status::StatusDoc,
        version::LONG_VERSION,
    },
    config::Config,
    daemon::{self, RunOptions},
    datapath::ebpf::Replace,
    logs::{self, LogFormat},
};

/// The daemon's allocator: jemalloc, for the whole process (it replaces `malloc`). glibc's
/// allocator kept what a daemon with many endpoints freed: the config parse's peak, and the
/// holes probe tasks leave when they start on one runtime thread and end on another (see the
/// README's "Probes at scale" for the figures).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its first allocation (`MALLOC_CONF` in the environment wins):
/// a background thread returns pages unused for a quarter of a second to the system
/// (`dirty_decay_ms`) at once (`muzzy_decay_ms:0`: no lazily freed middle state), so the
/// resident figure follows the live heap rather than its high-water mark. A quarter rather
/// than a whole second: at 40 000 probes a second the freed pages of the last second were
/// 5 to 10 MB of the resident figure, and the CPU it costs did not show in the bench.
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads (`const char *malloc_conf`).
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a static C string literal, never written.
unsafe impl Sync for MallocConf {}

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
        /// Swap this program in through the pinned link even when the attached one is the
        /// same (`program`), also with fresh maps (`maps`): tests of the upgrade path.
        #[arg(long, value_enum, hide = true)]
        replace_program: Option<ReplaceProgram>,
    },
    /// Validate a configuration file (and its zone files), print a summary, and check what
    /// `run` needs of this host as this user: its addresses can be bound, its event log and
    /// state file written.
    Check {
        /// The configuration file.
        config: PathBuf,
    },
    /// Make the running daemon re-read its config file and zone files and apply them, as
    /// SIGHUP does. Exits non-zero with the reason when the daemon keeps its running
    /// configuration.
    Reload {
        #[command(flatten)]
        daemon: DaemonArgs,
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReplaceProgram {
    Program,
    Maps,
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
        Command::Reload { daemon } => reload(&daemon),
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

/// `hotpool check`: the config and its zones, then what `run` needs of this host.
fn check(config: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    out(&cfg.summary())?;
    let (text, fails) = daemon::preflight::report(&daemon::preflight::check(&cfg));
    out(&text)?;
    if fails {
        anyhow::bail!(
            "{}: `hotpool run` would fail here (see the checks above)",
            config.display()
        );
    }
    Ok(())
}

/// `hotpool run`: SIGHUP is harmless from the first moment (a reload once running).
fn run(config: &Path, opts: RunOptions) -> anyhow::Result<()> {
    daemon::ignore_hangups();
    let cfg = Config::load(config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(daemon::run(cfg, opts))
}

/// `hotpool reload`: the daemon's answer, or why it kept its configuration.
fn reload(daemon: &DaemonArgs) -> anyhow::Result<()> {
    let client = daemon.client()?;
    match ask(async { Ok(client.post(&["api", "reload"]).await?) }) {
        Ok(body) => out(&format!("{}\n", body["ok"].as_str().unwrap_or("reloaded"))),
        Err(e) => match e.downcast_ref::<ClientError>() {
            // The daemon read the new config and kept the running one: say why.
            Some(ClientError::Failed {
                status: 422,
                message,
                ..
            }) => anyhow::bail!("reload failed: {message}"),
            _ => Err(e),
        },
    }
}

/// `hotpool detach`: the pin directory from the arguments or the config (a config broken
/// beyond reading must not keep `systemctl stop` from detaching: the default then).
fn detach(
    config: Option<PathBuf>,
    pin_path: Option<PathBuf>,
    if_stopping: Option<&str>,
) -> anyhow::Result<()> {
    let default = || PathBuf::from(dns_common::DEFAULT_PIN_PATH);
    let pin_path = match (pin_path, config) {
        (Some(p), _) => p,
        (None, Some(c)) => Config::peek(&c).map(|p| p.pin_path).unwrap_or_else(|e| {
            eprintln!("hotpool: {e}; using the default pin path");
            default()
        }),
        (None, None) => default(),
    };
    out(&daemon::detach::run(&pin_path, if_stopping)?.to_string())
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
