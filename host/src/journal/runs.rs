//! Where runs are remembered: `$IMSFLOW_STATE_DIR/runs/<run-id>/` (default
//! `$XDG_STATE_HOME/imsflow`, else `~/.local/state/imsflow`), owner-only.
//! A `run` or `export` keeps its plan there (`plan.json`, with the journal
//! and lock beside it); `apply FILE` keeps its journal beside FILE and leaves
//! a `plan.ref` there naming FILE, so that `runs list` finds every run.
use super::{Ending, History, lock};
use serde::Serialize;
use std::path::{Path, PathBuf};

const REF_FILE: &str = "plan.ref";
pub const PLAN_FILE: &str = "plan.json";

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no run `{0}`: it is neither a run id listed by `imsflow runs list` nor a plan or journal file"
    )]
    Unknown(String),
}

pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("IMSFLOW_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("imsflow");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/imsflow")
}

fn runs_dir() -> PathBuf {
    state_dir().join("runs")
}

/// Run ids name directories: only `[A-Za-z0-9_.-]`, no dot segments.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The directory of a run, created owner-only.
pub fn run_dir(run_id: &str) -> Result<PathBuf, RunsError> {
    if !valid_id(run_id) {
        return Err(RunsError::Unknown(run_id.into()));
    }
    let dir = runs_dir().join(run_id);
    create_private_dirs(&dir)?;
    Ok(dir)
}

fn create_private_dirs(dir: &Path) -> Result<(), RunsError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| RunsError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Remembers a plan applied from outside the state directory.
pub fn register(run_id: &str, plan_path: &Path) -> Result<(), RunsError> {
    let dir = run_dir(run_id)?;
    let plan = std::path::absolute(plan_path).unwrap_or_else(|_| plan_path.to_path_buf());
    if plan == dir.join(PLAN_FILE) {
        return Ok(());
    }
    let path = dir.join(REF_FILE);
    std::fs::write(&path, plan.as_os_str().as_encoded_bytes())
        .map_err(|source| RunsError::Io { path, source })
}

/// The plan file of a run given by id, or by its plan or journal path.
pub fn resolve(arg: &str) -> Result<PathBuf, RunsError> {
    let path = Path::new(arg);
    if path.is_file() {
        let s = arg.strip_suffix(".journal").unwrap_or(arg);
        return Ok(PathBuf::from(s));
    }
    if !valid_id(arg) {
        return Err(RunsError::Unknown(arg.into()));
    }
    plan_of(&runs_dir().join(arg)).ok_or_else(|| RunsError::Unknown(arg.into()))
}

fn plan_of(dir: &Path) -> Option<PathBuf> {
    let own = dir.join(PLAN_FILE);
    if own.is_file() {
        return Some(own);
    }
    let text = crate::read::read_text_capped(&dir.join(REF_FILE), 4096, "run reference").ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

/// One line of `runs list`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub id: String,
    pub workflow: String,
    pub state: String,
    pub done: usize,
    pub total: usize,
    pub started: Option<String>,
    pub plan: PathBuf,
}

/// Every remembered run, oldest first.
pub fn list() -> Vec<RunSummary> {
    let Ok(entries) = std::fs::read_dir(runs_dir()) else {
        return Vec::new();
    };
    let mut runs: Vec<RunSummary> = entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.to_string();
            let plan = plan_of(&e.path())?;
            Some(summarize(&id, &plan))
        })
        .collect();
    runs.sort_by(|a, b| (&a.started, &a.id).cmp(&(&b.started, &b.id)));
    runs
}

/// A run's summary from its journal alone (plans can be large).
pub fn summarize(id: &str, plan: &Path) -> RunSummary {
    let journal = super::path_for(plan);
    let (history, state) = match super::read(&journal) {
        Ok(records) => {
            let h = History::of(&records);
            let state = state_of(&h, &lock::path_for(plan));
            (h, state)
        }
        Err(_) if !journal.exists() => (History::default(), "planned, not applied".into()),
        Err(e) => (History::default(), format!("unreadable journal: {e}")),
    };
    RunSummary {
        id: id.to_string(),
        workflow: history.workflow.clone().unwrap_or_default(),
        state,
        done: history.done.len(),
        total: history.effects,
        started: history.started_at.clone(),
        plan: plan.to_path_buf(),
    }
}

pub fn state_of(h: &History, lock: &Path) -> String {
    if let Some(holder) = lock::RunLock::holder(lock) {
        return format!("running (pid {} on {})", holder.pid, holder.host);
    }
    match &h.ending {
        Some(Ending::Finished) => "finished".into(),
        Some(Ending::Failed) => "failed".into(),
        Some(Ending::AtGate(g)) => format!("stopped at gate `{g}`"),
        Some(Ending::Interrupted(signal)) => format!("interrupted ({signal})"),
        None => "unfinished (the process died)".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_ids_cannot_leave_the_state_directory() {
        for bad in ["", ".", "..", "../x", "a/b", "a\nb"] {
            assert!(!super::valid_id(bad), "{bad:?}");
        }
        assert!(super::valid_id("20261126T093000-ab_c9xyz"));
    }
}
