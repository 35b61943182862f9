//! `hotpool detach`: removing the kernel path by hand, or from the systemd unit when it is
//! stopped (and only then).
//!
//! # Stop, not restart
//!
//! systemd runs `ExecStopPost=` for every end of the main process: `systemctl stop`, the stop
//! half of `systemctl restart`, and a crash before `Restart=` starts it again; no variable
//! tells them apart. The unit's current *job* does: a stop (and a system shutdown) runs a job
//! of type `stop`; a restart keeps its job's type `restart` while its stop half runs; a crash
//! has no job at all (the automatic restart queues one only after `RestartSec=`); a failed
//! start runs a `start` job. So `hotpool detach --if-stopping --unit %n` asks systemd for the
//! unit's job (`systemctl list-jobs`) and detaches only under a `stop` job: a restart, a crash
//! and a failed start leave the kernel path answering from the last published maps.

use std::{fmt, path::Path, process::Command};

use crate::datapath::link::{self, Detached};

/// The unit's current job, as systemd reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitJob {
    /// A job of this type (`stop`, `restart`, `start`, ...).
    Job(String),
    /// No job: a crash or a `systemctl kill`, or the unit is just running.
    None,
}

/// The type of `unit`'s job in the output of `systemctl list-jobs` (columns JOB, UNIT, TYPE,
/// STATE, with or without the legend; "No jobs running." when there are none).
pub fn job_of(list_jobs: &str, unit: &str) -> UnitJob {
    for line in list_jobs.lines() {
        let mut words = line.split_whitespace();
        let (Some(id), Some(name), Some(kind)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if id.parse::<u64>().is_ok() && name == unit {
            return UnitJob::Job(kind.to_string());
        }
    }
    UnitJob::None
}

/// What `--if-stopping` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The unit is being stopped: detach.
    Detach,
    /// Keep the kernel path; why.
    Keep(String),
}

/// The decision for `unit` with job `job`.
pub fn decide(unit: &str, job: &UnitJob) -> Decision {
    match job {
        UnitJob::Job(kind) if kind == "stop" => Decision::Detach,
        UnitJob::Job(kind) => Decision::Keep(format!(
            "{unit} is not being stopped (its job is {kind}); the XDP program stays attached"
        )),
        UnitJob::None => Decision::Keep(format!(
            "{unit} has no stop job (it exited on its own or crashed, and Restart= brings it \
             back); the XDP program stays attached"
        )),
    }
}

/// Asks systemd for `unit`'s job.
pub fn query_job(unit: &str) -> Result<UnitJob, String> {
    let out = Command::new("systemctl")
        .args(["list-jobs", "--no-legend", "--no-pager", unit])
        .output()
        .map_err(|e| format!("running systemctl list-jobs: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "systemctl list-jobs {unit} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(job_of(&String::from_utf8_lossy(&out.stdout), unit))
}

/// What `hotpool detach` did.
#[derive(Debug)]
pub enum Outcome {
    Detached(Vec<Detached>),
    Kept(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kept(why) => writeln!(f, "{why}"),
            Self::Detached(links) if links.is_empty() => {
                writeln!(f, "no pinned XDP link: nothing attached")
            }
            Self::Detached(links) => {
                for d in links {
                    match d.info {
                        Some(info) => writeln!(
                            f,
                            "detached the XDP program from {} (link {}, program {}); pin removed",
                            d.pin, info.id, info.prog_id
                        )?,
                        None => writeln!(f, "removed the unreadable link pin {}", d.pin)?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// `hotpool detach`: with `if_stopping_unit`, only when systemd is stopping that unit.
pub fn run(pin_dir: &Path, if_stopping_unit: Option<&str>) -> anyhow::Result<Outcome> {
    if let Some(unit) = if_stopping_unit {
        let job = match query_job(unit) {
            Ok(job) => job,
            // Unknown is not a stop: keep answering rather than guess.
            Err(e) => {
                return Ok(Outcome::Kept(format!(
                    "cannot ask systemd about {unit} ({e}); the XDP program stays attached"
                )));
            }
        };
        if let Decision::Keep(why) = decide(unit, &job) {
            return Ok(Outcome::Kept(why));
        }
    }
    Ok(Outcome::Detached(link::detach_pinned(pin_dir)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "hotpool.service";

    #[test]
    fn a_stop_job_detaches() {
        // `systemctl list-jobs --no-legend hotpool.service` during `systemctl stop`.
        let out = "1234 hotpool.service stop running\n";
        assert_eq!(job_of(out, UNIT), UnitJob::Job("stop".into()));
        assert_eq!(decide(UNIT, &job_of(out, UNIT)), Decision::Detach);
        // With the legend, as older systemctl versions print it.
        let out = "JOB  UNIT            TYPE STATE\n  77 hotpool.service stop running\n\n1 jobs listed.\n";
        assert_eq!(decide(UNIT, &job_of(out, UNIT)), Decision::Detach);
    }

    #[test]
    fn a_restart_a_crash_and_a_failed_start_keep_the_kernel_path() {
        // `systemctl restart`: the job keeps its type while the stop half runs.
        let restart = "1301 hotpool.service restart running\n";
        let Decision::Keep(why) = decide(UNIT, &job_of(restart, UNIT)) else {
            panic!("a restart must not detach");
        };
        assert!(why.contains("restart"), "{why}");
        // A crash: no job (the automatic restart is queued after RestartSec=).
        for none in ["", "No jobs running.\n"] {
            assert_eq!(job_of(none, UNIT), UnitJob::None);
            assert!(matches!(decide(UNIT, &UnitJob::None), Decision::Keep(_)));
        }
        // ExecStartPre (`hotpool check`) failed: the start job runs ExecStopPost.
        let start = "88 hotpool.service start running\n";
        assert!(matches!(
            decide(UNIT, &job_of(start, UNIT)),
            Decision::Keep(_)
        ));
    }

    #[test]
    fn only_the_named_unit_counts() {
        // Shutting down: every unit has a stop job; another unit's is not ours.
        let out = "5 other.service stop waiting\n6 hotpool@b.service stop running\n";
        assert_eq!(job_of(out, UNIT), UnitJob::None);
        assert_eq!(
            job_of(out, "hotpool@b.service"),
            UnitJob::Job("stop".into())
        );
        // A header-like line is not a job.
        assert_eq!(job_of("JOB hotpool.service stop x\n", UNIT), UnitJob::None);
    }
}
