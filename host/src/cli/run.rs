//! `run`, `plan`, `apply` and `show`: the plan/apply cycle.
use super::{Cli, Exit};
use anyhow::Context;
use imsflow::apply::ApplyOptions;
use imsflow::backends::Backends;
use imsflow::connect::Connect;
use imsflow::engine::{Engine, RunError, RunOptions, RunReport};
use imsflow::plan::{Plan, render};
use imsflow::workflow;
use std::path::Path;

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
/// from it, or a plan that touches nothing, runs anywhere.
async fn backends(cli: &Cli, connect: &Connect, needed: bool) -> anyhow::Result<Backends> {
    if !needed {
        return Ok(Backends::default());
    }
    let settings = match imsflow::connect::config_file(cli.config.as_deref()) {
        Some(file) => connect.clone().with_file(&file)?,
        None => connect.clone(),
    };
    settings
        .connect()
        .await
        .context("connecting to the CSM (see the README, \"Connecting to a CSM\")")
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
        progress: !cli.json && !cli.quiet,
    }
}

/// Plans and, unless `dry_run`, applies a workflow; prints the report.
pub async fn execute(
    cli: &Cli,
    wf: &workflow::Workflow,
    params: &[(String, String)],
    dry_run: bool,
    connect: &Connect,
) -> anyhow::Result<RunReport> {
    let engine = Engine::new(
        super::runtime()?,
        backends(cli, connect, reads_csm(wf)).await?,
    );
    match engine.run(wf, &options(cli, params, dry_run)).await {
        Ok(report) => Ok(report),
        Err(e @ RunError::StepsFailed { .. }) => {
            if let RunError::StepsFailed { steps, .. } = &e {
                print_steps(cli, steps);
            }
            Err(e.into())
        }
        Err(e) => Err(e).with_context(|| format!("running workflow `{}`", wf.name)),
    }
}

pub async fn run(
    cli: &Cli,
    workflow: &str,
    params: &[(String, String)],
    dry_run: bool,
    connect: &Connect,
) -> anyhow::Result<Exit> {
    let wf = workflow::load(workflow)?;
    let report = execute(cli, &wf, params, dry_run, connect).await?;
    print_report(cli, &report);
    Ok(if dry_run && !report.plan.effects.is_empty() {
        Exit::Pending
    } else {
        Exit::Ok
    })
}

pub async fn plan(
    cli: &Cli,
    workflow: &str,
    params: &[(String, String)],
    out: &Path,
    connect: &Connect,
) -> anyhow::Result<Exit> {
    let wf = workflow::load(workflow)?;
    let engine = Engine::new(
        super::runtime()?,
        backends(cli, connect, reads_csm(&wf)).await?,
    );
    let planned = match engine.plan(&wf, &options(cli, params, false)).await {
        Ok(p) => p,
        Err(e @ RunError::StepsFailed { .. }) => {
            if let RunError::StepsFailed { steps, .. } = &e {
                print_steps(cli, steps);
            }
            return Err(e.into());
        }
        Err(e) => return Err(e).with_context(|| format!("planning workflow `{}`", wf.name)),
    };
    planned.plan.save(out)?;
    if cli.json {
        println!(
            "{}",
            serde_json::json!({
                "plan": out, "plan_hash": planned.plan.plan_hash,
                "effects": planned.plan.effects.len(), "bytes": planned.plan.total_bytes(),
            })
        );
    } else if !cli.quiet {
        print!("{}", render::render(&planned.plan));
        println!(
            "\nSaved the plan to {}. Review it with `imsflow show {0}`; apply exactly it with `imsflow apply {0}`.",
            out.display()
        );
    }
    Ok(Exit::Ok)
}

pub async fn apply(cli: &Cli, path: &Path, connect: &Connect) -> anyhow::Result<Exit> {
    let plan = Plan::load(path)?;
    let touches_csm = plan.effects.iter().any(|e| e.effect.bucket().is_some());
    let engine = Engine::new(
        super::runtime()?,
        backends(cli, connect, touches_csm).await?,
    );
    let opts = ApplyOptions {
        progress: !cli.json && !cli.quiet,
    };
    let report = engine
        .apply_saved(&plan, &opts)
        .await
        .with_context(|| format!("applying the plan {}", path.display()))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !cli.quiet {
        for note in &report.notes {
            println!("note: {note}");
        }
        println!(
            "applied {} effect(s); {} already done (plan_hash {})",
            report.applied, report.already_done, plan.plan_hash
        );
        if let Some(archive) = &report.archive {
            println!("Data saved to: {}", archive.display());
        }
    }
    Ok(Exit::Ok)
}

pub fn show(cli: &Cli, path: &Path) -> anyhow::Result<Exit> {
    let plan = Plan::load(path)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", render::render(&plan));
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
        println!(
            "step {:<20} {:<8}{took}, {} effect(s)",
            s.id,
            serde_json::to_value(s.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            s.effects
        );
    }
}

fn print_report(cli: &Cli, report: &RunReport) {
    if cli.json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: cannot render the report: {e}"),
        }
        return;
    }
    if cli.quiet {
        return;
    }
    print_steps(cli, &report.steps);
    let plan = &report.plan;
    match &report.apply {
        None => {
            print!("{}", render::render(plan));
        }
        Some(applied) => {
            for note in &applied.notes {
                println!("note: {note}");
            }
            println!(
                "applied {} effect(s), {}",
                applied.applied,
                imsflow::units::bytes(plan.total_bytes())
            );
            if let Some(archive) = &applied.archive {
                println!("Data saved to: {}", archive.display());
            }
        }
    }
}
