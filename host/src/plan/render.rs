//! The review rendering of a plan (`imsflow show`, and `--dry-run`): a
//! header naming what the plan was made from, one line per effect grouped by
//! kind (in plan order within a group), and totals. Deterministic, so golden
//! tests pin it.
use super::Plan;
use super::effect::{DeleteMode, Effect, ImsKind, KINDS};
use crate::units::bytes;
use std::collections::BTreeMap;
use std::fmt::Write;

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    header(plan, &mut out);
    for g in &plan.gates {
        let _ = writeln!(
            out,
            "Approval gate `{}` before effect {}: {}",
            g.name, g.before, g.description
        );
    }
    if plan.effects.is_empty() {
        out.push_str("\nNo effects: nothing to do.\n");
        return out;
    }
    let width = plan.effects.iter().map(|e| e.id.len()).max().unwrap_or(0);
    for kind in KINDS {
        let group: Vec<_> = plan
            .effects
            .iter()
            .filter(|e| e.effect.kind() == *kind)
            .collect();
        if group.is_empty() {
            continue;
        }
        let size: u64 = group.iter().filter_map(|e| e.effect.size()).sum();
        let _ = writeln!(
            out,
            "\n{kind}: {} effect(s){}",
            group.len(),
            if size > 0 {
                format!(", {}", bytes(size))
            } else {
                String::new()
            }
        );
        for e in group {
            let size = e
                .effect
                .size()
                .map(|s| format!(" ({})", bytes(s)))
                .unwrap_or_default();
            let _ = writeln!(out, "  {:<width$}  {}{size}", e.id, e.effect.describe());
        }
    }
    totals(plan, &mut out);
    out
}

fn header(plan: &Plan, out: &mut String) {
    let w = &plan.workflow;
    let _ = writeln!(
        out,
        "Plan of workflow `{}` ({}, sha256 {})",
        w.name,
        w.source,
        short(&w.sha256)
    );
    let _ = writeln!(
        out,
        "  made by imsflow {}{} for run {} (timestamp {})",
        plan.imsflow_version,
        plan.build
            .as_ref()
            .map(|b| format!(" (commit {}, built {})", b.commit_label(), b.build_date))
            .unwrap_or_default(),
        plan.run.id,
        plan.run.timestamp
    );
    let _ = writeln!(out, "  plan_hash {}", plan.plan_hash);
    if let Some(system) = &plan.system {
        let _ = writeln!(out, "  made against:");
        for line in system.lines() {
            let _ = writeln!(out, "    {line}");
        }
    }
    let params: Vec<String> = plan
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !params.is_empty() {
        let _ = writeln!(out, "  params: {}", params.join(", "));
    }
    for s in &plan.steps {
        let _ = writeln!(
            out,
            "  step {}: {} {} (sha256 {}){}",
            s.id,
            s.plugin.name,
            s.plugin.version,
            short(&s.plugin.sha256),
            if s.ran { "" } else { ", skipped" }
        );
    }
    if let Some(t) = &plan.target {
        let _ = writeln!(out, "  output: {}", t.final_path().display());
    }
    if let Some(i) = &plan.input {
        let _ = writeln!(
            out,
            "  input: {} ({}{})",
            i.path.display(),
            bytes(i.size),
            i.index_sha256
                .as_ref()
                .map(|h| format!(", index sha256 {}", short(h)))
                .unwrap_or_default()
        );
    }
}

fn totals(plan: &Plan, out: &mut String) {
    let _ = writeln!(
        out,
        "\nTotal: {} effect(s), {}",
        plan.effects.len(),
        bytes(plan.total_bytes())
    );
    let (mut members, mut member_bytes) = (0, 0);
    let (mut uploads, mut upload_bytes, mut replacing) = (0, 0, 0);
    let mut records: BTreeMap<String, usize> = BTreeMap::new();
    for e in &plan.effects {
        match &e.effect {
            Effect::ArchiveAddObject { .. }
            | Effect::ArchiveAddJson { .. }
            | Effect::ArchiveAddIndex { .. } => {
                members += 1;
                member_bytes += e.effect.size().unwrap_or(0);
            }
            Effect::S3UploadFromArchive {
                size, precondition, ..
            } => {
                uploads += 1;
                upload_bytes += size;
                if matches!(precondition, super::effect::TargetState::Etag { .. }) {
                    replacing += 1;
                }
            }
            Effect::ImsDelete {
                ims_kind, delete, ..
            } => {
                let how = match delete {
                    DeleteMode::Soft if *ims_kind == ImsKind::Job => "delete",
                    DeleteMode::Soft => "soft-delete",
                    DeleteMode::Hard { cascade: true } => "hard-delete with artifacts",
                    DeleteMode::Hard { cascade: false } => "hard-delete",
                    DeleteMode::Purge => "purge",
                };
                *records
                    .entry(format!("{} {how}", ims_kind.name()))
                    .or_default() += 1;
            }
            Effect::ImsStoreWrite {
                ims_kind,
                deleted,
                summary,
                ..
            } => {
                let kind = format!(
                    "{}{}",
                    if *deleted { "deleted " } else { "" },
                    ims_kind.name()
                );
                for (action, ids) in [
                    ("add", &summary.added),
                    ("replace", &summary.replaced),
                    ("remove", &summary.removed),
                ] {
                    if !ids.is_empty() {
                        *records
                            .entry(format!("{kind} {action} (data file)"))
                            .or_default() += ids.len();
                    }
                }
            }
            _ => {}
        }
    }
    if members > 0 {
        let _ = writeln!(
            out,
            "  archive: {members} member(s), {}{}",
            bytes(member_bytes),
            plan.target
                .as_ref()
                .map(|t| format!(" -> {}", t.final_path().display()))
                .unwrap_or_default()
        );
    }
    if uploads > 0 {
        let _ = writeln!(
            out,
            "  S3 uploads: {uploads} object(s), {}, {replacing} replacing an existing object",
            bytes(upload_bytes)
        );
    }
    if !records.is_empty() {
        let list: Vec<String> = records.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(out, "  IMS records: {}", list.join(", "));
    }
}

fn short(sha: &str) -> &str {
    let hex = sha.strip_prefix("sha256:").unwrap_or(sha);
    &hex[..hex.len().min(12)]
}
