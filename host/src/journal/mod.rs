//! The journal of an apply: JSON lines beside the plan (`<plan>.journal`),
//! one record per event, so that a run killed at any point can be resumed
//! exactly (`imsflow resume`) and reviewed (`imsflow runs show`).
//!
//! Durability, and why it is enough: before an effect starts, a record
//! naming it (`announced`, or `started`) is on disk; after it ends, `done`
//! is appended. `done` records are group-committed (fsynced with the next
//! announcement, gate or the end of the run) rather than one by one: an
//! effect whose `done` was lost is "in doubt", and resume asks its executor's
//! `check` whether it took effect, which every executor can answer. So one
//! fsync covers a window of effects, not two fsyncs per effect.
//!
//! A journal never holds a credential: records carry effect ids, object
//! names, digests, HTTP statuses and error messages (which are built without
//! secrets, see `connect`).
pub mod lock;
pub mod runs;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Largest journal read back (a 100k-effect run writes a few tens of MiB).
const MAX_JOURNAL_BYTES: u64 = 256 << 20;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// UTC, RFC 3339.
    pub at: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An apply (or a resume) of the plan with this hash began.
    Accepted {
        plan_hash: String,
        run_id: String,
        workflow: String,
        effects: usize,
        resumed: bool,
        pid: u32,
        host: String,
    },
    /// These effects may start before their own records are durable.
    Announced {
        ids: Vec<String>,
    },
    Started {
        id: String,
    },
    /// A multipart upload was opened for the effect; resume aborts it if the
    /// effect did not finish, so that no upload is left orphaned.
    MultipartOpened {
        id: String,
        bucket: String,
        key: String,
        upload_id: String,
    },
    Done {
        id: String,
        #[serde(default, skip_serializing_if = "Observed::is_empty")]
        observed: Observed,
        /// Not executed because it had already taken effect: why we know.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skipped: Option<String>,
    },
    Failed {
        id: String,
        kind: FailureKind,
        message: String,
    },
    /// Resume's verdict on an effect that was in progress when a run
    /// stopped, or that the journal records as done while the world says
    /// otherwise (`done: false`: it is done again).
    Decided {
        id: String,
        done: bool,
        why: String,
    },
    /// An effect in progress was undone on interrupt or on resume.
    RolledBack {
        id: String,
        what: String,
    },
    GateReached {
        gate: String,
    },
    GateApproved {
        gate: String,
        by: String,
    },
    /// The run stopped at a gate; `resume` continues from it.
    GateStopped {
        gate: String,
        why: String,
    },
    Interrupted {
        signal: String,
    },
    Finished {
        ok: bool,
    },
}

/// What an executor saw when its effect ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// Records a data-file write kept that the plan did not know (IMS
    /// accepted them after planning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
    /// The import's end-state verification: what it read back and compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<crate::postcheck::PostCheck>,
}

impl Observed {
    pub fn is_empty(&self) -> bool {
        *self == Observed::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The executor's own failure (S3, IMS, the archive, Kubernetes).
    Executor,
    /// A test fault injected through a test hook (`test_hooks`).
    Injected,
    /// Stopped by a signal.
    Interrupted,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "journal {path} line {line} is not a journal record ({message}); it was not written by this imsflow, or was edited"
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "journal {path} belongs to another plan (plan_hash {journal}, this plan {plan}); move it away to apply this plan from the start"
    )]
    OtherPlan {
        path: PathBuf,
        journal: String,
        plan: String,
    },
    #[error("the folder {path} of the plan {why}")]
    UnsafeFolder { path: PathBuf, why: String },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
}

/// An apply's hold on a run: the lock, the open journal, and what it says.
pub struct Begun {
    pub lock: lock::RunLock,
    pub journal: Journal,
    pub history: History,
}

/// Locks the run of the plan at `plan_path` and opens its journal, which
/// must be this plan's (or new).
pub fn begin(plan_path: &Path, plan_hash: &str) -> Result<Begun, JournalError> {
    let folder = plan_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::owner::check_plan_folder(folder).map_err(|why| JournalError::UnsafeFolder {
        path: folder.to_path_buf(),
        why,
    })?;
    let lock = lock::RunLock::acquire(&lock::path_for(plan_path))?;
    let path = path_for(plan_path);
    let (journal, records) = Journal::open(&path)?;
    let history = History::of(&records);
    if let Some(theirs) = &history.plan_hash
        && theirs != plan_hash
    {
        return Err(JournalError::OtherPlan {
            path,
            journal: theirs.clone(),
            plan: plan_hash.to_string(),
        });
    }
    Ok(Begun {
        lock,
        journal,
        history,
    })
}

/// The journal path of a plan file.
pub fn path_for(plan: &Path) -> PathBuf {
    let mut p = plan.as_os_str().to_owned();
    p.push(".journal");
    PathBuf::from(p)
}

/// An open journal, appended to by one apply (the caller holds the lock).
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Records written since the last fsync.
    unsynced: usize,
    fsync: bool,
}

impl Journal {
    /// Opens (creating it owner-only) the journal at `path` and returns the
    /// records already in it. A torn last line, left by a kill in the middle
    /// of a write, is cut off: its effect is in doubt and `check` decides.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Record>), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = crate::owner::open_ours(
            path,
            std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode_owner_only(),
        )
        .map_err(io)?;
        let (records, good_len) = read_records(path, &mut file)?;
        if good_len < file.metadata().map_err(io)?.len() {
            file.set_len(good_len).map_err(io)?;
        }
        file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
        Ok((
            Journal {
                path: path.to_path_buf(),
                file,
                unsynced: 0,
                // Always true in a normal build; only the journal benchmark's
                // baseline turns it off (`test_hooks`).
                fsync: crate::test_hooks::journal_fsync(),
            },
            records,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a record; durable at the next `commit`.
    pub fn append(&mut self, event: Event) -> Result<(), JournalError> {
        let record = Record { at: now(), event };
        let mut line = serde_json::to_vec(&record).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.unsynced += 1;
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn commit(&mut self) -> Result<(), JournalError> {
        if self.unsynced == 0 {
            return Ok(());
        }
        if self.fsync {
            self.file.sync_data().map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        self.unsynced = 0;
        Ok(())
    }

    /// Appends a record and makes it durable at once.
    pub fn append_durable(&mut self, event: Event) -> Result<(), JournalError> {
        self.append(event)?;
        self.commit()
    }
}

trait OwnerOnly {
    fn mode_owner_only(&mut self) -> &mut Self;
}

impl OwnerOnly for std::fs::OpenOptions {
    fn mode_owner_only(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// Reads a journal without opening it for writing (for `runs`).
pub fn read(path: &Path) -> Result<Vec<Record>, JournalError> {
    let mut file = crate::owner::open_ours(path, std::fs::OpenOptions::new().read(true)).map_err(
        |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        },
    )?;
    Ok(read_records(path, &mut file)?.0)
}

/// The records, and the length of the file up to the last complete one.
fn read_records(path: &Path, file: &mut File) -> Result<(Vec<Record>, u64), JournalError> {
    let mut text = Vec::new();
    file.seek(std::io::SeekFrom::Start(0))
        .and_then(|_| {
            Read::by_ref(file)
                .take(MAX_JOURNAL_BYTES + 1)
                .read_to_end(&mut text)
        })
        .map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if text.len() as u64 > MAX_JOURNAL_BYTES {
        return Err(JournalError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!(
                "larger than {MAX_JOURNAL_BYTES} bytes; not a journal of this imsflow"
            )),
        });
    }
    let mut records = Vec::new();
    let mut good = 0usize;
    for (n, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        match (
            serde_json::from_slice::<Record>(line),
            line.ends_with(b"\n"),
        ) {
            (Ok(r), true) => {
                records.push(r);
                good += line.len();
            }
            (Err(e), true) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: n + 1,
                    message: e.to_string(),
                });
            }
            // Only the last line can lack its newline: a kill tore the write.
            (_, false) => break,
        }
    }
    Ok((records, good as u64))
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What a journal says about a run, folded from its records.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub plan_hash: Option<String>,
    pub run_id: Option<String>,
    pub workflow: Option<String>,
    pub effects: usize,
    pub started_at: Option<String>,
    pub last_at: Option<String>,
    /// Effects that took effect (executed or found done), with what was seen.
    pub done: BTreeMap<String, Observed>,
    /// Effects announced or started, and neither done nor decided since.
    pub in_doubt: BTreeSet<String>,
    /// The last failure of each effect that failed and is not done since.
    pub failed: BTreeMap<String, String>,
    /// Multipart uploads opened for effects that are not done: effect id ->
    /// (bucket, key, upload id).
    pub open_uploads: BTreeMap<String, (String, String, String)>,
    /// Effects found already done rather than executed: why.
    pub skipped: BTreeMap<String, String>,
    /// Approved gates, with who approved them.
    pub gates_approved: BTreeMap<String, String>,
    /// How the last apply ended, when it ended on its own.
    pub ending: Option<Ending>,
    pub applies: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Finished,
    Failed,
    AtGate(String),
    Interrupted(String),
}

impl History {
    pub fn of(records: &[Record]) -> History {
        let mut h = History::default();
        for r in records {
            h.started_at.get_or_insert_with(|| r.at.clone());
            h.last_at = Some(r.at.clone());
            match &r.event {
                Event::Accepted {
                    plan_hash,
                    run_id,
                    workflow,
                    effects,
                    ..
                } => {
                    h.plan_hash = Some(plan_hash.clone());
                    h.run_id = Some(run_id.clone());
                    h.workflow = Some(workflow.clone());
                    h.effects = *effects;
                    h.applies += 1;
                    h.ending = None;
                }
                Event::Announced { ids } => h
                    .in_doubt
                    .extend(ids.iter().filter(|id| !h.done.contains_key(*id)).cloned()),
                Event::Started { id } => {
                    h.in_doubt.insert(id.clone());
                }
                Event::MultipartOpened {
                    id,
                    bucket,
                    key,
                    upload_id,
                } => {
                    h.open_uploads
                        .insert(id.clone(), (bucket.clone(), key.clone(), upload_id.clone()));
                }
                Event::Done {
                    id,
                    observed,
                    skipped,
                } => {
                    if let Some(why) = skipped {
                        h.skipped.insert(id.clone(), why.clone());
                    }
                    h.in_doubt.remove(id);
                    h.failed.remove(id);
                    h.open_uploads.remove(id);
                    h.done.insert(id.clone(), observed.clone());
                }
                Event::Failed { id, message, .. } => {
                    h.failed.insert(id.clone(), message.clone());
                    h.ending = Some(Ending::Failed);
                }
                Event::Decided { id, done, .. } => {
                    h.in_doubt.remove(id);
                    if *done {
                        h.done.entry(id.clone()).or_default();
                    } else {
                        h.done.remove(id);
                        h.skipped.remove(id);
                    }
                }
                // Undone: whatever the effect did is no longer in effect.
                Event::RolledBack { id, .. } => {
                    h.in_doubt.remove(id);
                    h.open_uploads.remove(id);
                    h.done.remove(id);
                    h.skipped.remove(id);
                }
                Event::GateReached { .. } => {}
                Event::GateApproved { gate, by } => {
                    h.gates_approved.insert(gate.clone(), by.clone());
                }
                Event::GateStopped { gate, .. } => h.ending = Some(Ending::AtGate(gate.clone())),
                Event::Interrupted { signal } => {
                    h.ending = Some(Ending::Interrupted(signal.clone()))
                }
                Event::Finished { ok } => {
                    h.ending = Some(if *ok {
                        Ending::Finished
                    } else {
                        Ending::Failed
                    })
                }
            }
        }
        h
    }

    pub fn finished(&self) -> bool {
        self.ending == Some(Ending::Finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_journal_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.journal");
        {
            let (mut j, old) = Journal::open(&path).unwrap();
            assert!(old.is_empty());
            j.append_durable(Event::Started { id: "a.0".into() })
                .unwrap();
        }
        // A kill in the middle of a write.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(br#"{"at":"x","event":"done","id":"a"#).unwrap();
        let (mut j, records) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 1);
        j.append_durable(Event::Done {
            id: "a.0".into(),
            observed: Observed::default(),
            skipped: None,
        })
        .unwrap();
        let h = History::of(&read(&path).unwrap());
        assert!(h.done.contains_key("a.0"));
        assert!(h.in_doubt.is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// What others could plant beside a plan: `begin` never writes through
    /// it, and a folder they can write is refused unless it is sticky.
    #[test]
    fn links_beside_a_plan_and_folders_others_can_write_are_refused() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("p.json");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();

        let lock = lock::path_for(&plan);
        symlink(&victim, &lock).unwrap();
        let e = begin(&plan, "h").err().unwrap().to_string();
        assert!(
            e.contains("p.json.lock") && e.contains("symbolic link"),
            "{e}"
        );
        std::fs::remove_file(&lock).unwrap();

        let journal = path_for(&plan);
        symlink(&victim, &journal).unwrap();
        let e = begin(&plan, "h").err().unwrap().to_string();
        assert!(
            e.contains("p.json.journal") && e.contains("symbolic link"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&victim).unwrap(),
            b"keep",
            "not written through"
        );
        std::fs::remove_file(&journal).unwrap();

        let elsewhere = dir.path().join("created-through-a-link");
        symlink(&elsewhere, &journal).unwrap();
        let e = begin(&plan, "h").err().unwrap().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(
            !elsewhere.exists(),
            "nothing created through a dangling link"
        );
        std::fs::remove_file(&journal).unwrap();

        let set = |mode| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(0o775);
        let e = begin(&plan, "h").err().unwrap().to_string();
        assert!(e.contains("can be written by group or others"), "{e}");
        assert!(!journal.exists() && !lock.exists());
        set(0o1777);
        let begun = begin(&plan, "h").expect("a sticky folder, as /tmp, with our own files");
        drop(begun);
        set(0o700);
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_refused_with_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.journal");
        std::fs::write(
            &path,
            "garbage\n{\"at\":\"x\",\"event\":\"finished\",\"ok\":true}\n",
        )
        .unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn a_done_effect_decided_not_done_is_done_no_more() {
        let rec = |event| Record {
            at: "t".into(),
            event,
        };
        let h = History::of(&[
            rec(Event::Done {
                id: "s.0".into(),
                observed: Observed::default(),
                skipped: None,
            }),
            rec(Event::Decided {
                id: "s.0".into(),
                done: false,
                why: "s3://b/k does not exist".into(),
            }),
        ]);
        assert!(!h.done.contains_key("s.0"), "{:?}", h.done);
    }

    #[test]
    fn announced_effects_are_in_doubt_until_done() {
        let rec = |event| Record {
            at: "t".into(),
            event,
        };
        let h = History::of(&[
            rec(Event::Announced {
                ids: vec!["s.0".into(), "s.1".into()],
            }),
            rec(Event::Done {
                id: "s.0".into(),
                observed: Observed::default(),
                skipped: None,
            }),
        ]);
        assert_eq!(h.in_doubt.iter().collect::<Vec<_>>(), vec!["s.1"]);
        assert!(h.done.contains_key("s.0"));
    }
}
