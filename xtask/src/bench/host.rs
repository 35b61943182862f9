//! `cargo xtask bench host`: the criterion benchmarks (`benches/`) of the current tree and of
//! the baseline's tree, side by side (a benchmark one of them lacks shows as –).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use super::{
    binaries,
    report::{self, Report, Table},
};
use crate::cmd;

/// Shorter than criterion's defaults (3 s warm-up, 5 s measurement) to keep a full run short.
const CRITERION_ARGS: &[&str] = &["--warm-up-time", "1", "--measurement-time", "3", "--noplot"];

pub fn run(baseline_rev: &str, bench_dir: &Path) -> Result<Report> {
    let (baseline_tree, baseline_target, short) = binaries::baseline_tree(baseline_rev, bench_dir)?;
    let mut columns: Vec<(String, Result<BTreeMap<String, f64>>)> = Vec::new();
    for (label, tree, target) in [
        (
            format!("baseline {short}"),
            baseline_tree,
            Some(baseline_target),
        ),
        ("current".to_owned(), cmd::workspace_root().to_owned(), None),
    ] {
        println!("host: criterion in {}", tree.display());
        let home = bench_dir.join(format!("criterion-{}", label.replace(' ', "-")));
        let result = criterion(&tree, target.as_deref(), &home)
            .with_context(|| format!("criterion benchmarks of {label}"));
        columns.push((label, result));
    }
    let mut names: Vec<String> = columns
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flat_map(|m| m.keys().cloned())
        .collect();
    names.sort();
    names.dedup();
    let header: Vec<&str> = std::iter::once("benchmark")
        .chain(columns.iter().map(|(l, _)| l.as_str()))
        .collect();
    let mut table = Table::new(&header);
    for name in &names {
        let mut row = vec![format!("`{name}`")];
        for (_, result) in &columns {
            row.push(match result {
                Ok(m) => m
                    .get(name)
                    .map_or_else(|| "–".to_owned(), |v| report::ns(*v)),
                Err(_) => "–".to_owned(),
            });
        }
        table.row(row);
    }
    let mut rep = Report::new(
        "Host: criterion micro-benchmarks",
        "Mean time per iteration (criterion, 1 s warm-up, 3 s measurement) of the host \
         benchmarks in `benches/`, for the baseline's tree and the current one.",
    );
    rep.table("", &table);
    for (label, result) in &columns {
        if let Err(err) = result {
            rep.note(&format!("{label}: {err:#}"));
        }
    }
    Ok(rep)
}

/// Runs `cargo bench` of hotpool-benches in `tree`; returns mean ns per benchmark id.
fn criterion(tree: &Path, target: Option<&Path>, home: &Path) -> Result<BTreeMap<String, f64>> {
    let _ = fs::remove_dir_all(home);
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(tree)
        .env("CRITERION_HOME", home)
        .args(["bench", "--package", "hotpool-benches", "--"])
        .args(CRITERION_ARGS);
    if let Some(target) = target {
        cargo.env("CARGO_TARGET_DIR", target);
    }
    cmd::run(&mut cargo)?;
    let mut results = BTreeMap::new();
    collect(home, &mut results)?;
    Ok(results)
}

/// Every `<bench>/new/{benchmark,estimates}.json` below `dir`.
fn collect(dir: &Path, results: &mut BTreeMap<String, f64>) -> Result<()> {
    let new = dir.join("new");
    if new.join("estimates.json").is_file() {
        if let Some((id, mean)) = read_estimate(&new)? {
            results.insert(id, mean);
        }
        return Ok(());
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for sub in dirs {
        collect(&sub, results)?;
    }
    Ok(())
}

fn read_estimate(new: &Path) -> Result<Option<(String, f64)>> {
    let read = |name: &str| -> Result<serde_json::Value> {
        let path = new.join(name);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    };
    Ok(parse_estimate(
        &read("benchmark.json")?,
        &read("estimates.json")?,
    ))
}

pub fn parse_estimate(
    benchmark: &serde_json::Value,
    estimates: &serde_json::Value,
) -> Option<(String, f64)> {
    let id = benchmark["full_id"].as_str()?.to_owned();
    let mean = estimates["mean"]["point_estimate"].as_f64()?;
    Some((id, mean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_estimate() {
        let benchmark: serde_json::Value = serde_json::from_str(
            r#"{"group_id":"hot_key","function_id":"fold+build","value_str":null,"throughput":null,"full_id":"hot_key/fold+build","directory_name":"hot_key/fold+build","title":"hot_key/fold+build"}"#,
        )
        .unwrap();
        let estimates: serde_json::Value = serde_json::from_str(
            r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":64.1,"upper_bound":66.0},"point_estimate":65.2,"standard_error":0.5},"median":{"point_estimate":64.9}}"#,
        )
        .unwrap();
        assert_eq!(
            parse_estimate(&benchmark, &estimates),
            Some(("hot_key/fold+build".to_owned(), 65.2))
        );
        assert_eq!(parse_estimate(&benchmark, &serde_json::json!({})), None);
    }
}
