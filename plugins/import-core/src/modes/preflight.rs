//! Phase "preflight", the planner's part (the host checks the archive, the
//! buckets, the IMS pod and the backup directory): the current state must
//! include deleted records, and running jobs stop every mode but `add`
//! unless `--ignore-running-jobs`.
use super::{Inputs, Mode, Notes};
use crate::ims::running_jobs;

pub(super) fn preflight(mode: Mode, inputs: &Inputs, notes: &mut Notes) {
    let (archive, current) = (inputs.archive, inputs.current);
    if current.deleted.is_none() {
        notes.problems.push("the current IMS state lacks deleted records: run ims-fetch with include_deleted = true".into());
    }
    let running = running_jobs(&current.jobs);
    if !running.is_empty() {
        if mode == Mode::Add {
            notes.warnings.push(format!(
                "{} IMS job(s) not complete; add goes on: {}",
                running.len(),
                running.join("; ")
            ));
            if !inputs.options.ignore_running_jobs {
                notes.differences.push("add does not require --ignore-running-jobs while jobs run (HPE's does, through its backup)".into());
            }
        } else if inputs.options.ignore_running_jobs {
            notes.warnings.push(format!(
                "ignoring {} incomplete job(s): {}",
                running.len(),
                running.join("; ")
            ));
        } else {
            notes.problems.push(format!(
                "Aborted import due to incomplete jobs: {}. Wait until jobs are completed, or pass --ignore-running-jobs",
                running.join("; ")
            ));
        }
    }
    if archive.artifacts.is_none() && !archive.ims.has_no_records() {
        notes.differences.push("the archive has no S3 data (s3_data: null): its records are imported (HPE's importer crashes)".into());
    }
}
