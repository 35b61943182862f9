//! Running subprocesses and finding the workspace's paths.

use std::{
    env,
    ffi::OsStr,
    io,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}

/// The cargo target directory this xtask was built into.
///
/// `cargo xtask` builds us as `<target-dir>/debug/xtask`, so our own executable tells where
/// cargo puts artifacts however the target directory was configured (`CARGO_TARGET_DIR`,
/// `build.target-dir`, or the default).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        return workspace_root().join(dir);
    }
    env::current_exe()
        .ok()
        .and_then(|exe| target_dir_of(&exe))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `<target-dir>` from `<target-dir>/<profile>/<exe>`, for the built-in profiles.
fn target_dir_of(exe: &Path) -> Option<PathBuf> {
    let profile_dir = exe.parent()?;
    match profile_dir.file_name()?.to_str()? {
        "debug" | "release" => profile_dir.parent().map(Path::to_path_buf),
        _ => None,
    }
}

/// `cargo` (the rustup proxy on PATH, so `RUSTUP_TOOLCHAIN` keeps selecting the toolchain that
/// runs us), started in the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root());
    cmd
}

/// The command line as a shell user would type it, for banners and error messages.
pub fn display(cmd: &Command) -> String {
    let mut words: Vec<String> = cmd
        .get_envs()
        .filter_map(|(key, value)| {
            value.map(|value| format!("{}={}", key.to_string_lossy(), value.to_string_lossy()))
        })
        .collect();
    words.push(cmd.get_program().to_string_lossy().into_owned());
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

fn quote(arg: &OsStr) -> String {
    let arg = arg.to_string_lossy();
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.into_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio; an error names the command and how it ended.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; an error names the command and carries its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .with_context(|| format!("could not start `{}`", display(cmd)))?;
    if !status.success() {
        bail!(
            "`{}` failed ({status}): {}",
            display(cmd),
            String::from_utf8_lossy(&stderr).trim()
        );
    }
    String::from_utf8(stdout).with_context(|| format!("`{}` printed non-UTF-8", display(cmd)))
}

/// Like [`output`], but `Ok(None)` when the program is not installed at all.
pub fn output_if_installed(cmd: &mut Command) -> Result<Option<(bool, String)>> {
    match cmd.output() {
        Ok(out) => Ok(Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("could not start `{}`", display(cmd))),
    }
}

/// The first executable called `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| {
            path.metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_dir_from_exe_path() {
        assert_eq!(
            target_dir_of(Path::new("/w/target/debug/xtask")),
            Some(PathBuf::from("/w/target"))
        );
        assert_eq!(
            target_dir_of(Path::new("/tmp/t/release/xtask")),
            Some(PathBuf::from("/tmp/t"))
        );
        assert_eq!(target_dir_of(Path::new("/usr/bin/xtask")), None);
    }

    #[test]
    fn display_quotes_only_what_needs_it() {
        let mut cmd = Command::new("cargo");
        cmd.env("LLVM_PREFIX", "/c/llvm-prefix")
            .args(["test", "--", "name with space", "it's"]);
        assert_eq!(
            display(&cmd),
            r"LLVM_PREFIX=/c/llvm-prefix cargo test -- 'name with space' 'it'\''s'"
        );
    }
}
