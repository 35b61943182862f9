//! `cargo xtask build` and `cargo xtask run`, and getting root for the tasks that need it.

use std::{
    env,
    ffi::{OsStr, OsString},
    os::unix::process::CommandExt as _,
    process::Command,
};

use anyhow::{Context as _, Result, anyhow};

use crate::{cmd, setup};

/// Whether we run with an effective uid of 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Returns at once when root; otherwise replaces this process with the same xtask command
/// under `sudo -E`, or fails saying why root is needed when there is no sudo.
pub fn become_root(task: &str, why: &str) -> Result<()> {
    if is_root() {
        return Ok(());
    }
    let mut sudo = sudo(task, why)?;
    let exe = env::current_exe().context("finding the xtask executable to re-run under sudo")?;
    sudo.arg(exe).args(env::args_os().skip(1));
    eprintln!("xtask: `cargo xtask {task}` needs root ({why}); re-running under sudo -E");
    Err(sudo.exec()).with_context(|| format!("could not start `{}`", cmd::display(&sudo)))
}

/// `sudo -E env PATH=… RUSTUP_HOME=… CARGO_HOME=… RUSTUP_TOOLCHAIN=…`, ready for a program
/// and its arguments. Debian's sudo replaces PATH with its secure_path even under `-E`, which
/// would hide cargo and rustup; passing the rustup variables keeps root on our toolchains.
fn sudo(task: &str, why: &str) -> Result<Command> {
    let sudo = cmd::which("sudo").ok_or_else(|| {
        anyhow!("`cargo xtask {task}` needs root ({why}) and sudo is not installed; run it as root")
    })?;
    let mut cmd = Command::new(sudo);
    cmd.args(["-E", "env"]);
    for var in ["PATH", "RUSTUP_HOME", "CARGO_HOME", "RUSTUP_TOOLCHAIN"] {
        if let Some(value) = env::var_os(var) {
            cmd.arg(assignment(var, &value));
        }
    }
    Ok(cmd)
}

fn assignment(var: &str, value: &OsStr) -> OsString {
    let mut arg = OsString::from(var);
    arg.push("=");
    arg.push(value);
    arg
}

/// `cargo build [--release]` of the default members; dns-userspace's build script builds and
/// embeds the eBPF object.
pub fn build(release: bool) -> Result<()> {
    let mut cargo = cmd::cargo();
    cargo.arg("build");
    if release {
        cargo.arg("--release");
    }
    cmd::run(&mut cargo)
}

/// Arguments for hotpool when `cargo xtask run` is given none.
fn default_args() -> Vec<OsString> {
    let config = cmd::workspace_root().join("examples/hotpool.toml");
    vec!["run".into(), "--config".into(), config.into()]
}

/// Builds, then runs `target/<profile>/hotpool` with `args` (or [`default_args`]).
///
/// hotpool replaces this process (`exec`), under `sudo -E` when we are not root. So SIGINT
/// and SIGTERM sent to `cargo xtask run` reach hotpool itself, and its exit status is ours;
/// sudo relays signals to hotpool in the same way. Only hotpool runs as root: the build runs
/// as the invoking user and leaves no root-owned files in the target directory.
pub fn run(release: bool, args: Vec<OsString>) -> Result<()> {
    setup::ensure(false)?;
    // Fail before a long build when root cannot be had.
    let sudo = if is_root() {
        None
    } else {
        Some(sudo(
            "run",
            "hotpool attaches an XDP program and pins maps",
        )?)
    };
    build(release)?;
    let profile = if release { "release" } else { "debug" };
    let binary = cmd::target_dir().join(profile).join("hotpool");
    let args = if args.is_empty() {
        default_args()
    } else {
        args
    };
    let mut hotpool = match sudo {
        Some(mut sudo) => {
            sudo.arg(&binary);
            sudo
        }
        None => Command::new(&binary),
    };
    hotpool.args(args);
    eprintln!("xtask: running `{}`", cmd::display(&hotpool));
    Err(hotpool.exec()).with_context(|| format!("could not start `{}`", cmd::display(&hotpool)))
}
