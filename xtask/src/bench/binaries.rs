//! The two hotpool builds a benchmark compares: the current tree's release binary and a
//! baseline revision's, built in a git worktree under target/bench/.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::servers::Binary;
use crate::cmd;

/// The previous release: the baseline unless `--baseline` names another revision.
pub const PREVIOUS_RELEASE: &str = "64106f2";

fn git() -> Command {
    let mut git = Command::new("git");
    git.current_dir(cmd::workspace_root());
    git
}

/// The full commit hash `rev` names.
fn resolve(rev: &str) -> Result<String> {
    let out = cmd::output(
        git()
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("{rev}^{{commit}}")),
    )
    .with_context(|| format!("--baseline {rev}: no such commit in this repository"))?;
    Ok(out.trim().to_owned())
}

/// Builds (or finds already built) the release hotpool of `rev` and of the current tree.
///
/// The baseline is built in `target/bench/baseline-<hash>/` (a detached git worktree) with a
/// target directory of its own, `target/bench/baseline-target/`, so neither build overwrites
/// the other's binary; its binary is copied to `target/bench/bin/hotpool-<hash>` and reused
/// by later runs (a commit does not change).
pub fn prepare(rev: &str, bench_dir: &Path) -> Result<[Binary; 2]> {
    let hash = resolve(rev)?;
    let short = &hash[..7];
    let bin_dir = bench_dir.join("bin");
    fs::create_dir_all(&bin_dir).with_context(|| format!("creating {}", bin_dir.display()))?;
    let baseline_bin = bin_dir.join(format!("hotpool-{hash}"));
    if baseline_bin.is_file() {
        println!("baseline {short}: reusing {}", baseline_bin.display());
    } else {
        let (tree, target, _) = baseline_tree(rev, bench_dir)?;
        println!(
            "baseline {short}: building the release hotpool in {}",
            tree.display()
        );
        cmd::run(
            Command::new("cargo")
                .current_dir(&tree)
                .env("CARGO_TARGET_DIR", &target)
                .args([
                    "build",
                    "--release",
                    "--package",
                    "dns-userspace",
                    "--bin",
                    "hotpool",
                ]),
        )?;
        copy(&target.join("release/hotpool"), &baseline_bin)?;
    }
    println!("current: building the release hotpool");
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "--package",
        "dns-userspace",
        "--bin",
        "hotpool",
    ]))?;
    let current_bin = bin_dir.join("hotpool-current");
    copy(&cmd::target_dir().join("release/hotpool"), &current_bin)?;
    Ok([
        Binary {
            label: format!("baseline {short}"),
            path: baseline_bin,
        },
        Binary {
            label: "current".to_owned(),
            path: current_bin,
        },
    ])
}

/// The baseline's worktree (created or moved to `rev`), its target directory and short hash.
pub fn baseline_tree(rev: &str, bench_dir: &Path) -> Result<(PathBuf, PathBuf, String)> {
    let hash = resolve(rev)?;
    let short = hash[..7].to_owned();
    let tree = bench_dir.join(format!("baseline-{short}"));
    worktree(&tree, &hash)?;
    Ok((tree, bench_dir.join("baseline-target"), short))
}

/// A detached worktree of `hash` at `tree`, created or moved to that commit.
fn worktree(tree: &Path, hash: &str) -> Result<()> {
    if tree.join(".git").exists() {
        cmd::run(
            git()
                .arg("-C")
                .arg(tree)
                .args(["checkout", "--quiet", "--detach", hash]),
        )?;
        return Ok(());
    }
    // A worktree whose directory was deleted (`cargo clean`) is still registered.
    cmd::run(git().args(["worktree", "prune"]))?;
    cmd::run(
        git()
            .args(["worktree", "add", "--detach"])
            .arg(tree)
            .arg(hash),
    )
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if !from.is_file() {
        bail!("{} was not built", from.display());
    }
    // Copy to a temporary name and rename, so a half-copied binary is never reused.
    let partial = PathBuf::from(format!("{}.partial", to.display()));
    fs::copy(from, &partial)
        .with_context(|| format!("copying {} to {}", from.display(), partial.display()))?;
    fs::rename(&partial, to).with_context(|| format!("renaming to {}", to.display()))
}
