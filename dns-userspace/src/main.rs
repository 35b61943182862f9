//! `hotpool`: the daemon and its operator commands.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use hotpool::{
    config::Config,
    daemon::{self, RunOptions},
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
    },
    /// Validate a configuration file (and its zone files) and print a summary.
    Check {
        /// The configuration file.
        config: PathBuf,
    },
    /// Print the XDP program's counters from the pinned stats map of a running daemon.
    Stats {
        /// The pin directory (`server.pin_path` in the config).
        #[arg(long, default_value = "/sys/fs/bpf/hotpool")]
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
        Command::Check { config } => Config::load(&config)
            .map(|cfg| print!("{}", cfg.summary()))
            .map_err(anyhow::Error::from),
        Command::Run { config, no_xdp } => match Config::load(&config) {
            Ok(cfg) => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(daemon::run(cfg, RunOptions { no_xdp }))),
            Err(e) => Err(e.into()),
        },
        Command::Stats { pin_path } => print_stats(&pin_path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hotpool: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_stats(pin_path: &std::path::Path) -> anyhow::Result<()> {
    for (outcome, n) in hotpool::hot::read_pinned_stats(pin_path)? {
        println!("{:<14} {n}", outcome.name());
    }
    Ok(())
}
