//! `run`, `plan`, `apply`, `resume` and `show`: the plan/apply cycle. Every
//! apply is journalled (`imsflow::journal`): a run keeps its plan under the
//! state directory, `apply FILE` keeps its journal beside FILE.
use super::out::{out, outln};
use super::{Cli, Exit};
use anyhow::Context;
use imsflow::apply::{
    ApplyError, ApplyOptions, ApplyReport, Durable, GatePolicy, GatePrompt, GateWhy,
};
use imsflow::backends::Backends;
use imsflow::cancel::Cancel;
use imsflow::connect::Connect;
use imsflow::engine::{Engine, Planned, RunError, RunOptions, RunReport};
use imsflow::journal::{self, runs};
use imsflow::plan::{Plan, render};
use imsflow::target::SystemTarget;
use imsflow::workflow;
use std::path::Path;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Params {
    /// Set a workflow param: --param name=value (repeatable).
    #[arg(long = "param", short = 'p', value_parser = parse_kv)]
    pub params: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got `{s}`"))
}

/// Connects to the CSM only when `needed`: a workflow that reads nothing
/// from it, or a plan that touches nothing, runs anywhere. The engine knows
/// which system it reached, and its plans record it.
pub(super) async fn engine(cli: &Cli, connect: &Connect, needed: bool) -> anyhow::Result<Engine> {
    let (backends, system) = if needed {
        let (backends, system) = super::settings(cli, connect)?
            .connect_with_target()
            .await
            .context("connecting to the CSM (see the README, \"Connecting to a CSM\")")?;
        (backends, Some(system))
    } else {
        (Backends::default(), None)
    };
    Ok(Engine::new(super::runtime()?, backends).with_system(system))
}

/// Says which system a run will change, and where each setting came from,
/// before it changes anything.
pub(super) fn announce(cli: &Cli, system: &SystemTarget) {
    if cli.json || cli.quiet {
        return;
    }
    outln!("Target system:");
    for line in system.lines() {
        outln!("  {line}");
    }
}

/// A JSON document with the system the run targets beside it.
pub(super) fn with_system(
    mut doc: serde_json::Value,
    engine: &Engine,
) -> anyhow::Result<serde_json::Value> {
    doc["system"] = serde_json::to_value(engine.system())?;
    Ok(doc)
}

fn reads_csm(wf: &workflow::Workflow) -> bool {
    wf.steps
        .iter()
        .any(|s| !s.grants.services.is_empty() || !s.grants.buckets.is_empty())
}

fn options(cli: &Cli, params: &[(String, String)], dry_run: bool) -> RunOptions {
    RunOptions {
        params: params.to_vec(),
        dry_run,
        observer: super::view::observer(cli.json, cli.quiet),
    }
}

/// Plans a workflow; an interrupt while planning stops it (nothing is applied).
pub(super) async fn plan_workflow(
    cli: &Cli,
    engine: &Engine,
    wf: &workflow::Workflow,
    opts: &RunOptions,
    cancel: &Cancel,
) -> anyhow::Result<Planned> {
    let planned = tokio::select! {
        r = engine.plan(wf, opts) => r,
        _ = cancel.cancelled() => anyhow::bail!(
            "interrupted by {} while planning; nothing was applied", cancel.why()
        ),
    };
    match planned {
        Ok(p) => Ok(p),
        Err(e @ RunError::StepsFailed { .. }) => {
            if let RunError::StepsFailed { steps, .. } = &e {
                print_steps(cli, steps);
            }
            Err(e.into())
        }
        // The engine's errors name the workflow themselves.
        Err(e) => Err(e).context("planning the run"),
    }
}

/// Plans and, unless `dry_run`, applies a workflow under a journal kept in
/// the state directory (`imsflow runs list`, `imsflow resume`).
pub async fn execute(
    cli: &Cli,
    wf: &workflow::Workflow,
    params: &[(String, String)],
    dry_run: bool,
    connect: &Connect,
    gates: &GateFlags,
    cancel: &Cancel,
) -> anyhow::Result<RunReport> {
    let engine = engine(cli, connect, reads_csm(wf)).await?;
    let planned = plan_workflow(cli, &engine, wf, &options(cli, params, dry_run), cancel).await?;
    let apply = if dry_run || !planned.plan.has_work() {
        None
    } else {
        let plan = &planned.plan;
        if let Some(system) = engine.system()
            && plan.effects.iter().any(|e| e.effect.needs_csm())
        {
            announce(cli, system);
        }
        let path = runs::run_dir(&plan.run.id)?.join(runs::PLAN_FILE);
        plan.save(&path)?;
        let opts = apply_options(cli, gates, cancel);
        Some(apply_durable(&engine, plan, &path, &opts, false).await?)
    };
    Ok(RunReport {
        plan: planned.plan,
        steps: planned.steps,
        apply,
        peak_rss_kib: imsflow::engine::peak_rss_kib(),
    })
}

pub async fn run(
    cli: &Cli,
    workflow: &str,
    params: &[(String, String)],
    dry_run: bool,
    connect: &Connect,
    gates: &GateFlags,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    let wf = workflow::load_with(workflow, &super::site_services(cli)?)?;
    let report = execute(cli, &wf, params, dry_run, connect, gates, cancel).await?;
    Ok(
        print_report(cli, &report).unwrap_or(if dry_run && report.plan.has_work() {
            Exit::Pending
        } else {
            Exit::Ok
        }),
    )
}

pub async fn plan(
    cli: &Cli,
    workflow: &str,
    params: &[(String, String)],
    out: &Path,
    connect: &Connect,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    let wf = workflow::load_with(workflow, &super::site_services(cli)?)?;
    let engine = engine(cli, connect, reads_csm(&wf)).await?;
    let planned = plan_workflow(cli, &engine, &wf, &options(cli, params, false), cancel).await?;
    planned.plan.save(out)?;
    if cli.json {
        outln!(
            "{}",
            serde_json::json!({
                "plan": out, "plan_hash": planned.plan.plan_hash,
                "effects": planned.plan.effects.len(), "bytes": planned.plan.total_bytes(),
            })
        );
    } else if !cli.quiet {
        out!("{}", render::render(&planned.plan));
        outln!(
            "\nSaved the plan to {}. Review it with `imsflow show {0}`; apply exactly it with `imsflow apply {0}`.",
            out.display()
        );
    }
    Ok(Exit::Ok)
}

/// `apply FILE` and `resume RUN`: the same thing, since an apply continues
/// where the plan's journal says an earlier one stopped.
pub async fn apply(
    cli: &Cli,
    path: &Path,
    connect: &Connect,
    gates: &GateFlags,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    let plan = Plan::load(path)?;
    let touches_csm = plan.effects.iter().any(|e| e.effect.needs_csm());
    let engine = engine(cli, connect, touches_csm).await?;
    if let Some(now) = engine.system() {
        announce(cli, now);
        imsflow::target::check_plan(plan.system.as_ref(), now).map_err(|why| {
            anyhow::anyhow!("refusing to apply the plan {}: {why}", path.display())
        })?;
    }
    let opts = apply_options(cli, gates, cancel);
    let report = apply_durable(&engine, &plan, path, &opts, true)
        .await
        .with_context(|| format!("applying the plan {}", path.display()))?;
    if cli.json {
        let doc = with_system(serde_json::to_value(&report)?, &engine)?;
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(print_applied(cli, &plan, &report))
}

pub async fn resume(
    cli: &Cli,
    run: &str,
    connect: &Connect,
    gates: &GateFlags,
    cancel: &Cancel,
) -> anyhow::Result<Exit> {
    let path = runs::resolve(run)?;
    apply(cli, &path, connect, gates, cancel).await
}

/// Approval gates: how this invocation passes them.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "Approval")]
pub struct GateFlags {
    /// Approve every approval gate (the stock imports stop before their first destructive phase).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Stop at this gate; `imsflow resume RUN` continues from it later.
    #[arg(long, value_name = "GATE")]
    pub until: Option<String>,
}

/// Apply options for this invocation: a person at a terminal is asked at a
/// gate; anything else stops there unless `--yes`.
pub(super) fn apply_options(cli: &Cli, gates: &GateFlags, cancel: &Cancel) -> ApplyOptions {
    use std::io::IsTerminal;
    let interactive =
        !cli.json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    ApplyOptions {
        observer: super::view::observer(cli.json, cli.quiet),
        gates: GatePolicy {
            yes: gates.yes,
            until: gates.until.clone(),
            ask: interactive
                .then(|| Arc::new(ask) as Arc<dyn Fn(&GatePrompt) -> bool + Send + Sync>),
        },
        cancel: cancel.clone(),
    }
}

/// Shows what lies behind a gate and asks for yes or no.
fn ask(prompt: &GatePrompt) -> bool {
    eprint!("{}", prompt.remaining);
    eprint!(
        "\nApproval gate `{}`: {}\nContinue with the effects above? [y/N] ",
        prompt.gate.name, prompt.gate.description
    );
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Applies a plan kept at `plan_path` under its journal and lock: a new run,
/// or the continuation of one that stopped.
pub(super) async fn apply_durable(
    engine: &Engine,
    plan: &Plan,
    plan_path: &Path,
    opts: &ApplyOptions,
    saved: bool,
) -> anyhow::Result<ApplyReport> {
    let begun = journal::begin(plan_path, &plan.plan_hash)
        .with_context(|| format!("starting the run of {}", plan_path.display()))?;
    if let Some(old) = &begun.lock.took_over {
        eprintln!(
            "note: {} was left by {old}, which is no longer running (killed, or the host rebooted); this run took it over",
            journal::lock::path_for(plan_path).display()
        );
    }
    runs::register(&plan.run.id, plan_path)?;
    let durable = Some(Durable {
        journal: begun.journal,
        history: begun.history,
    });
    let result = if saved {
        engine.apply_saved(plan, opts, durable).await
    } else {
        engine.apply(plan, opts, durable).await
    };
    drop(begun.lock);
    let resume = format!("imsflow resume {}", plan.run.id);
    match result {
        Ok(report) => Ok(report),
        // The race's message ends with the command that finishes the job.
        Err(e @ ApplyError::Race(_)) => Err(e.into()),
        Err(e @ (ApplyError::Interrupted(_) | ApplyError::Failed(_))) => {
            Err(anyhow::anyhow!("{e}\nTo continue: {resume}"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Prints what an apply did; the exit code says whether it finished. An
/// import ends, however it got there, with its verification and `DONE!`.
pub(super) fn print_applied(cli: &Cli, plan: &Plan, report: &ApplyReport) -> Exit {
    let exit = match &report.stopped {
        Some(stop) if stop.why != GateWhy::Until => Exit::Pending,
        _ => Exit::Ok,
    };
    if cli.json || cli.quiet {
        return exit;
    }
    if report.already_finished {
        outln!(
            "run {} already finished: nothing to do ({} effect(s), plan_hash {})",
            plan.run.id,
            report.total,
            plan.plan_hash
        );
    } else {
        print_progress(plan, report);
    }
    if let Some(found) = &report.verification {
        outln!("{}", found.line());
        for change in &found.etag_changes {
            outln!("note: ETag changed: {change}");
        }
        if report.stopped.is_none() {
            outln!("DONE!");
        }
    }
    exit
}

/// What an apply did, where it stopped, and what it wrote.
fn print_progress(plan: &Plan, report: &ApplyReport) {
    for decision in &report.decisions {
        outln!("resume: {decision}");
    }
    for note in &report.notes {
        outln!("note: {note}");
    }
    outln!(
        "applied {} effect(s); {} already done; {} in the plan (plan_hash {})",
        report.applied,
        report.already_done,
        report.total,
        plan.plan_hash
    );
    if let Some(stop) = &report.stopped {
        let how = if stop.why == GateWhy::Until {
            format!("imsflow resume {}", plan.run.id)
        } else {
            format!("imsflow resume {} --yes", plan.run.id)
        };
        // A gate the apply raised itself (not one of the workflow's) says why.
        if !plan.gates.iter().any(|g| g.name == stop.gate) {
            outln!("{}", stop.description);
        }
        outln!(
            "Stopped at gate `{}` ({}): {} effect(s) behind it are not applied. To continue: {how}",
            stop.gate,
            stop.why,
            stop.remaining
        );
    }
    if let Some(archive) = &report.archive {
        // An import's archive is the backup taken before it, not its result.
        let what = match imsflow_kinds::ImportMode::from_workflow(&plan.run.workflow) {
            Some(_) => "Pre-import backup saved to",
            None => "Data saved to",
        };
        outln!("{what}: {}", archive.display());
    }
}

pub fn show(cli: &Cli, path: &Path) -> anyhow::Result<Exit> {
    let plan = Plan::load(path)?;
    if cli.json {
        outln!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        out!("{}", render::render(&plan));
    }
    Ok(Exit::Ok)
}

fn print_steps(cli: &Cli, steps: &[imsflow::engine::StepReport]) {
    if cli.json || cli.quiet {
        return;
    }
    for s in steps {
        let took = match (s.started_ms, s.finished_ms) {
            (Some(a), Some(b)) => format!(" in {:.0} ms", b - a),
            _ => String::new(),
        };
        let status = serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        outln!("step {:<20} {status}{took}, {} effect(s)", s.id, s.effects);
    }
}

/// Prints a run's report; with an apply, the exit code it calls for.
fn print_report(cli: &Cli, report: &RunReport) -> Option<Exit> {
    if cli.json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => outln!("{text}"),
            Err(e) => eprintln!("error: cannot render the report: {e}"),
        }
    }
    if cli.json || cli.quiet {
        return report
            .apply
            .as_ref()
            .map(|a| print_applied(cli, &report.plan, a));
    }
    print_steps(cli, &report.steps);
    let plan = &report.plan;
    match &report.apply {
        None => {
            out!("{}", render::render(plan));
            None
        }
        Some(applied) => Some(print_applied(cli, plan, applied)),
    }
}
