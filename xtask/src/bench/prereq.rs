//! The Debian packages the benchmarks use, installed when missing. Not part of
//! `cargo xtask setup` (CI runs only the test suite and needs none of them).

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, run::is_root, setup};

/// Load generators and inspection tools.
pub const TOOLS: &[&str] = &["iproute2", "knot-dnsutils", "dnsperf", "bpftool"];
/// The reference servers.
pub const SERVERS: &[&str] = &["knot", "nsd", "gdnsd"];
/// `perf`, for `--perf`.
pub const PERF: &str = "linux-perf";
/// The services those packages install.
const SERVICES: &[&str] = &["knot", "nsd", "gdnsd"];

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Installs what is missing of `packages`.
///
/// Debian starts a server's service when its package is installed, and the service would sit
/// on port 53. So during the install a `policy-rc.d` that exits 101 ("action forbidden") keeps
/// invoke-rc.d / deb-systemd-invoke from starting anything (an existing policy-rc.d is left
/// alone and not removed), and afterwards the services are stopped and disabled under systemd,
/// so they do not start at the next boot either. The benchmarks run their own instances, with
/// their own configuration, inside network namespaces.
pub fn ensure(packages: &[&str]) -> Result<()> {
    let mut query = Command::new("dpkg-query");
    query
        .args(["-W", "-f=${Package}\\t${Status}\\n"])
        .args(packages);
    let Some((_, stdout)) = cmd::output_if_installed(&mut query)? else {
        println!(
            "warning    dpkg-query not found (not Debian?); not checking for: {}",
            packages.join(" ")
        );
        return Ok(());
    };
    let missing = setup::missing_packages(packages, &stdout);
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {}; installing them needs root",
            missing.join(" ")
        );
    }
    println!("installing {}", missing.join(" "));
    let servers = missing.iter().any(|p| SERVERS.contains(p));
    let _policy = if servers {
        Some(NoServiceStarts::install()?)
    } else {
        None
    };
    setup::apt_install(&missing)?;
    if servers {
        stop_services();
    }
    Ok(())
}

/// A `policy-rc.d` forbidding service starts, removed on drop; none is written (and none
/// removed) when one already exists.
struct NoServiceStarts {
    written: bool,
}

impl NoServiceStarts {
    fn install() -> Result<Self> {
        let path = Path::new(POLICY_RC_D);
        if path.exists() {
            return Ok(Self { written: false });
        }
        fs::write(
            path,
            "#!/bin/sh\n# cargo xtask bench: no service starts during its install\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {POLICY_RC_D} executable"))?;
        Ok(Self { written: true })
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if self.written {
            let _ = fs::remove_file(POLICY_RC_D);
        }
    }
}

/// Stops and disables the reference servers' services where systemd runs them (without
/// systemd, the policy-rc.d above kept them from starting).
fn stop_services() {
    if !Path::new("/run/systemd/system").is_dir() {
        return;
    }
    for service in SERVICES {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", service])
            .status();
    }
}
