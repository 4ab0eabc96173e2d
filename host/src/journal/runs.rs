//! Where runs are remembered: `$IMSFLOW_STATE_DIR/runs/<run-id>/` (default
//! `$XDG_STATE_HOME/imsflow`, else `~/.local/state/imsflow`), owner-only:
//! created 0700, and refused when it is a link, not ours or writable by
//! others, as is a run folder that is not ours (runs resume with our
//! credentials).
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
    /// Runs are resumed with the operator's credentials: a state directory
    /// or run folder that someone else controls is never used.
    #[error(
        "{path}: {why}; imsflow keeps the runs it resumes there, so it must be a directory of your own (or set IMSFLOW_STATE_DIR to one)"
    )]
    NotPrivate { path: PathBuf, why: String },
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

/// `<state>/runs`, both created owner-only and checked private to us.
fn runs_dir() -> Result<PathBuf, RunsError> {
    let state = state_dir();
    if std::fs::symlink_metadata(&state).is_err() {
        create_private_dirs(&state, true)?;
    }
    private(&state)?;
    let runs = state.join("runs");
    create_private_dirs(&runs, false)?;
    private(&runs)?;
    Ok(runs)
}

fn private(dir: &Path) -> Result<(), RunsError> {
    crate::owner::check_private_dir(dir).map_err(|why| RunsError::NotPrivate {
        path: dir.to_path_buf(),
        why,
    })
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
    let dir = runs_dir()?.join(run_id);
    create_private_dirs(&dir, false)?;
    private(&dir)?;
    Ok(dir)
}

/// Creates `dir` 0700 (with its parents when `parents`); one that exists is
/// left to the caller's check.
fn create_private_dirs(dir: &Path, parents: bool) -> Result<(), RunsError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(parents)
        .mode(0o700)
        .create(dir)
    {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(RunsError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
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
    let dir = runs_dir()?.join(arg);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Err(RunsError::Unknown(arg.into()));
    }
    private(&dir)?;
    plan_of(&dir).ok_or_else(|| RunsError::Unknown(arg.into()))
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

/// Every remembered run, oldest first; a run folder that is not ours is
/// listed as refused, without reading what it holds.
pub fn list() -> Result<Vec<RunSummary>, RunsError> {
    let dir = runs_dir()?;
    let entries = std::fs::read_dir(&dir).map_err(|source| RunsError::Io { path: dir, source })?;
    let mut runs: Vec<RunSummary> = entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.to_string();
            if let Err(why) = crate::owner::check_private_dir(&e.path()) {
                return Some(RunSummary {
                    id,
                    workflow: String::new(),
                    state: format!("refused: {why}"),
                    done: 0,
                    total: 0,
                    started: None,
                    plan: e.path(),
                });
            }
            let plan = plan_of(&e.path())?;
            Some(summarize(&id, &plan))
        })
        .collect();
    runs.sort_by(|a, b| (&a.started, &a.id).cmp(&(&b.started, &b.id)));
    Ok(runs)
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
