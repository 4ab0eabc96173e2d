//! `runs list` and `runs show`: past and unfinished runs, from their journals.
use super::out::{out, outln};
use super::{Cli, Exit};
use anyhow::Context;
use imsflow::journal::{self, History, lock, runs};
use imsflow::plan::Plan;
use std::fmt::Write;

pub fn list(cli: &Cli) -> anyhow::Result<Exit> {
    let all = runs::list()?;
    if cli.json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(Exit::Ok);
    }
    if all.is_empty() {
        outln!("No runs under {}.", runs::state_dir().display());
        return Ok(Exit::Ok);
    }
    let id_w = all.iter().map(|r| r.id.len()).max().unwrap_or(0).max(3);
    let wf_w = all
        .iter()
        .map(|r| r.workflow.len())
        .max()
        .unwrap_or(0)
        .max(8);
    let state_w = all.iter().map(|r| r.state.len()).max().unwrap_or(0).max(5);
    outln!(
        "{:<id_w$}  {:<wf_w$}  {:<state_w$}  {:>11}  STARTED",
        "RUN",
        "WORKFLOW",
        "STATE",
        "EFFECTS"
    );
    for r in &all {
        outln!(
            "{:<id_w$}  {:<wf_w$}  {:<state_w$}  {:>11}  {}",
            r.id,
            r.workflow,
            r.state,
            format!("{}/{}", r.done, r.total),
            r.started.as_deref().map_or("-".into(), when)
        );
    }
    Ok(Exit::Ok)
}

/// `2026-11-26T09:30:00.123Z` as `2026-11-26 09:30:00 UTC`.
fn when(at: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(at) {
        Ok(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => at.to_string(),
    }
}

pub fn show(cli: &Cli, run: &str) -> anyhow::Result<Exit> {
    let plan_path = runs::resolve(run)?;
    let plan = Plan::load(&plan_path)?;
    let journal_path = journal::path_for(&plan_path);
    let history = if journal_path.exists() {
        History::of(
            &journal::read(&journal_path)
                .with_context(|| format!("reading the journal of run {run}"))?,
        )
    } else {
        History::default()
    };
    let state = if journal_path.exists() {
        runs::state_of(&history, &lock::path_for(&plan_path))
    } else {
        "planned, not applied".into()
    };
    let outcome = |id: &str| -> (String, String) {
        if let Some(why) = history.skipped.get(id) {
            ("done".into(), format!("already done: {why}"))
        } else if let Some(o) = history.done.get(id) {
            let mut seen = Vec::new();
            if let Some(b) = o.bytes {
                seen.push(imsflow::units::bytes(b));
            }
            if let Some(e) = &o.etag {
                seen.push(format!("ETag {e}"));
            }
            if let Some(s) = &o.sha256 {
                seen.push(format!("sha256 {}", &s[..s.len().min(12)]));
            }
            if let Some(v) = &o.verification {
                seen.push(v.line());
            }
            ("done".into(), seen.join(", "))
        } else if let Some(m) = history.failed.get(id) {
            ("failed".into(), m.clone())
        } else if history.in_doubt.contains(id) {
            (
                "in doubt".into(),
                "in progress when the run stopped; resume checks it".into(),
            )
        } else {
            ("pending".into(), String::new())
        }
    };
    if cli.json {
        let effects: Vec<_> = plan
            .effects
            .iter()
            .map(|e| {
                let (state, detail) = outcome(&e.id);
                serde_json::json!({ "id": e.id, "kind": e.effect.kind(), "state": state, "detail": detail })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run": plan.run.id, "workflow": plan.workflow.name, "plan": plan_path,
                "state": state, "done": history.done.len(), "total": plan.effects.len(),
                "started": history.started_at, "last": history.last_at,
                "applies": history.applies, "effects": effects,
            }))?
        );
        return Ok(Exit::Ok);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run {} of workflow `{}` (plan {})",
        plan.run.id,
        plan.workflow.name,
        plan_path.display()
    );
    let _ = writeln!(
        out,
        "State: {state}; {} of {} effect(s) done; {} apply(ies)",
        history.done.len(),
        plan.effects.len(),
        history.applies
    );
    if let (Some(first), Some(last)) = (&history.started_at, &history.last_at) {
        let _ = writeln!(out, "Started {}; last record {}", when(first), when(last));
    }
    let width = plan.effects.iter().map(|e| e.id.len()).max().unwrap_or(0);
    let gates: std::collections::BTreeMap<&str, _> =
        plan.gates.iter().map(|g| (g.before.as_str(), g)).collect();
    out.push('\n');
    for e in &plan.effects {
        if let Some(g) = gates.get(e.id.as_str()) {
            let status = match history.gates_approved.get(&g.name) {
                Some(by) => format!("approved by {by}"),
                None => "not approved".into(),
            };
            let _ = writeln!(out, "  -- gate `{}`: {status} --", g.name);
        }
        let (state, detail) = outcome(&e.id);
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" [{}]", imsflow::archive::escaped(&detail))
        };
        let _ = writeln!(
            out,
            "  {:<width$}  {:<8}  {}{detail}",
            e.id,
            state,
            e.effect.describe()
        );
    }
    out!("{out}");
    Ok(Exit::Ok)
}
