//! `imsflow import`: HPE's `import_ims_data.py` flags and meanings, on the
//! stock `import-<mode>` workflows: preflight (everything checked and listed
//! at once, before the gate and before anything is deleted), the plan, the
//! gate, and the apply under a journal, which ends with the post-import
//! verification (an effect of the plan, so `apply` and `resume` end with it
//! too).
use super::out::{out, outln};
use super::run::{
    GateFlags, announce, apply_durable, apply_options, engine, plan_workflow, print_applied,
    with_system,
};
use super::{Cli, Exit};
use anyhow::Context;
use imsflow::cancel::Cancel;
use imsflow::connect::Connect;
use imsflow::engine::RunOptions;
use imsflow::journal::runs;
use imsflow::plan::render;
use imsflow_kinds::ImportMode;
use std::path::{Path, PathBuf};

/// HPE's import mode as clap takes it: [`ImportMode`] (one definition,
/// shared with the import plugins), with its name and HPE's help.
#[derive(Clone, Copy, Debug)]
pub struct Mode(pub ImportMode);

impl clap::ValueEnum for Mode {
    fn value_variants<'a>() -> &'a [Self] {
        const ALL: [Mode; ImportMode::ALL.len()] = {
            let mut all = [Mode(ImportMode::Add); ImportMode::ALL.len()];
            let mut i = 0;
            while i < all.len() {
                all[i] = Mode(ImportMode::ALL[i]);
                i += 1;
            }
            all
        };
        &ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()).help(self.0.help()))
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Cleanup {
    Never,
    OnSuccess,
}

/// HPE's import flags, with HPE's meanings.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "dir"])))]
pub struct ImportFlags {
    /// HPE's import mode: what happens to records already in IMS.
    #[arg(value_enum)]
    pub mode: Mode,
    /// The export tar to import (read in place: nothing is extracted).
    #[arg(short = 'f', long = "file", value_name = "FILE.tar")]
    pub file: Option<PathBuf>,
    /// An export directory (an extracted tar, or a --no-tar export).
    #[arg(short = 'd', long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Existing directory for the pre-import backup [default: the current directory].
    #[arg(short = 'b', long = "backup-dir", value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Proceed with update/overwrite even if IMS jobs are running (`add` never needs it).
    #[arg(long)]
    pub ignore_running_jobs: bool,
    /// Accepted for HPE compatibility; imsflow extracts nothing, so it is unused.
    #[arg(short = 'w', long = "work-dir", value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Accepted for HPE compatibility; imsflow extracts nothing, so there is nothing to clean up.
    #[arg(short = 'c', long = "cleanup", value_enum)]
    pub cleanup: Option<Cleanup>,
    /// Print the plan (every record's action, S3 objects, data files, totals) and stop; exit 2 when there is something to do.
    #[arg(long)]
    pub dry_run: bool,
    /// Save the plan for `imsflow show` and `imsflow apply` instead of applying it.
    #[arg(long, value_name = "FILE")]
    pub plan_out: Option<PathBuf>,
}

impl ImportFlags {
    fn archive(&self) -> &Path {
        self.file
            .as_deref()
            .or(self.dir.as_deref())
            .expect("clap requires one of -f and -d")
    }
}

/// Problems with the command line and local files, all at once.
fn local_problems(flags: &ImportFlags, backup_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(file) = &flags.file {
        if !file.to_string_lossy().ends_with(".tar") {
            problems.push(format!(
                "-f {}: the archive must be a .tar file",
                file.display()
            ));
        } else if !file.is_file() {
            problems.push(format!(
                "-f {}: not a readable regular file",
                file.display()
            ));
        }
    }
    if let Some(dir) = &flags.dir
        && !dir.is_dir()
    {
        problems.push(format!("-d {}: not a directory", dir.display()));
    }
    match tempfile::tempfile_in(backup_dir) {
        Ok(_) => {}
        Err(e) => problems.push(format!(
            "-b {}: the backup directory is not writable: {e}",
            backup_dir.display()
        )),
    }
    problems
}

/// The buckets the import uploads to, each with its object count (the
/// preflight refuses one that the system does not have).
fn written_buckets(plan: &imsflow::plan::Plan) -> String {
    let mut buckets = std::collections::BTreeMap::<&str, usize>::new();
    for e in &plan.effects {
        if let imsflow::plan::effect::Effect::S3UploadFromArchive { bucket, .. } = &e.effect {
            *buckets.entry(bucket.as_str()).or_default() += 1;
        }
    }
    let list: Vec<String> = buckets
        .iter()
        .map(|(b, n)| format!("{b} ({n} object(s))"))
        .collect();
    format!(
        "S3 buckets the import writes: {}",
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    )
}

pub async fn import(
    cli: &Cli,
    flags: &ImportFlags,
    gates: &GateFlags,
    connect: &Connect,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    let say = |line: &str| {
        if !cli.json && !cli.quiet {
            outln!("{line}");
        }
    };
    if flags.work_dir.is_some() || flags.cleanup.is_some() {
        say(
            "note: -w and -c are accepted for compatibility: imsflow reads the archive in place and extracts nothing",
        );
    }
    // Absolute, as the plan records them: `apply` may run from elsewhere.
    let backup_dir = flags
        .backup_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let backup_dir = std::path::absolute(&backup_dir).unwrap_or(backup_dir);
    let archive = std::path::absolute(flags.archive()).unwrap_or_else(|_| flags.archive().into());
    let mut problems = local_problems(flags, &backup_dir);
    if problems.is_empty() {
        say(&format!(
            "Checking the archive {} (sha256 of every member that has one, its S3 ETag otherwise)",
            archive.display()
        ));
        match imsflow::verify::verify_with(&archive, imsflow::verify::Depth::Integrity) {
            Ok(report) => problems.extend(report.problems),
            Err(e) => problems.push(format!("{}: {e}", archive.display())),
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "preflight failed; nothing was changed:\n  - {}",
            problems.join("\n  - ")
        );
    }
    let wf = imsflow::workflow::load(flags.mode.0.workflow())?;
    let params = vec![
        ("archive".to_string(), archive.display().to_string()),
        ("backup_dir".to_string(), backup_dir.display().to_string()),
        (
            "ignore_running_jobs".to_string(),
            flags.ignore_running_jobs.to_string(),
        ),
    ];
    let engine = engine(cli, connect, true).await?;
    let opts = RunOptions {
        params,
        dry_run: flags.dry_run,
        observer: super::view::observer(cli.json, cli.quiet),
    };
    // The archive is read and checked by the plan's first step.
    let planned = plan_workflow(cli, &engine, &wf, &opts, cancel)
        .await
        .context("preflight failed; nothing was changed")?;
    let plan = planned.plan.clone();
    // Phase markers and the end-state verification are not work.
    let work = plan.has_work();
    if work {
        say(&written_buckets(&plan));
    }
    let problems = imsflow::apply::preflight(&plan, engine.backends()).await;
    if !problems.is_empty() {
        anyhow::bail!(
            "preflight failed; nothing was changed:\n  - {}",
            problems.join("\n  - ")
        );
    }
    let review = planned.output("import").clone();
    if !work && flags.plan_out.is_none() {
        if cli.json {
            let out = serde_json::json!({ "nothing_to_do": true, "review": review, "plan": plan });
            outln!("{}", serde_json::to_string_pretty(&out)?);
        }
        say(&format!(
            "Nothing to do: IMS and S3 already hold what {} holds for import {}.",
            archive.display(),
            flags.mode.0.name()
        ));
        return Ok(Exit::Ok);
    }
    // Before anything is changed: which system.
    if let Some(system) = engine.system() {
        announce(cli, system);
    }
    if flags.dry_run {
        if cli.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(&with_system(
                    serde_json::json!({ "review": review, "plan": plan }),
                    &engine
                )?)?
            );
        } else {
            let review = super::review::Review::from_output(&review)?;
            out!("{}", render::render(&plan));
            outln!();
            out!("{}", super::review::render(&review));
        }
        return Ok(if work { Exit::Pending } else { Exit::Ok });
    }
    if let Some(out) = &flags.plan_out {
        plan.save(out)?;
        say(&format!(
            "Saved the plan to {}. Review it with `imsflow show {0}`; apply exactly it with `imsflow apply {0}`.",
            out.display()
        ));
        return Ok(Exit::Ok);
    }
    let path = runs::run_dir(&plan.run.id)?.join(runs::PLAN_FILE);
    plan.save(&path)?;
    let report = apply_durable(
        &engine,
        &plan,
        &path,
        &apply_options(cli, gates, cancel),
        false,
    )
    .await
    .with_context(|| format!("importing {}", archive.display()))?;
    if cli.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&with_system(
                serde_json::json!({
                    "apply": report, "peak_rss_kib": imsflow::engine::peak_rss_kib(),
                }),
                &engine
            )?)?
        );
    }
    Ok(print_applied(cli, &plan, &report))
}
