//! A saved plan checked against the workflow it pins. The plan carries a
//! copy of each step's grants, and its hash detects edits but is not a
//! signature: whoever can write the plan file can widen a grant, add an
//! effect and seal it again. So apply derives every step's grants from the
//! workflow the plan names (embedded, or the file, whose sha256 must be the
//! one recorded), requires the plan's copy to equal them, and checks each
//! effect's kind against what the step's plugin declares in `describe`.
use crate::backends::SiteServices;
use crate::plan::Plan;
use crate::sandbox::Runtime;
use crate::workflow;
use std::collections::BTreeMap;

/// Every way the plan departs from its workflow and plugins, each named.
pub async fn problems(plan: &Plan, runtime: &Runtime, services: &SiteServices) -> Vec<String> {
    let source = &plan.workflow.source;
    let remake = "make the plan again instead of editing one";
    let wf = match workflow::load_source(source, services) {
        Ok(wf) => wf,
        Err(e) => {
            return vec![format!(
                "the plan's workflow {source} cannot be read to check the plan's grants against it: {e}"
            )];
        }
    };
    if wf.sha256 != plan.workflow.sha256 {
        return vec![format!(
            "the plan was made from workflow {source} with sha256 {}; it has sha256 {} now ({remake})",
            plan.workflow.sha256, wf.sha256
        )];
    }
    let planned: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    let declared: Vec<&str> = wf.steps.iter().map(|s| s.id.as_str()).collect();
    if planned != declared {
        return vec![format!(
            "the plan has steps {planned:?}; workflow {source} has {declared:?} ({remake})"
        )];
    }
    let plugins = match super::load_plugins(&wf, runtime).await {
        Ok(p) => p,
        Err(e) => return vec![format!("workflow {source}: {e}")],
    };
    let mut problems = Vec::new();
    // The kinds each step's plugin may emit, by step id.
    let mut emits = BTreeMap::new();
    for ((step, spec), plugin) in plan.steps.iter().zip(&wf.steps).zip(&plugins) {
        if step.plugin.source != spec.plugin.source() {
            problems.push(format!(
                "step `{}`: the plan runs plugin {}; workflow {source} runs {} ({remake})",
                step.id,
                step.plugin.source,
                spec.plugin.source()
            ));
        }
        if step.grants != spec.grants {
            problems.push(format!(
                "step `{}`: the plan's grants ({}) are not the ones workflow {source} gives it ({}); refusing a plan whose grants were edited ({remake})",
                step.id,
                serde_json::json!(step.grants),
                serde_json::json!(spec.grants)
            ));
        }
        emits.insert(step.id.as_str(), (&plugin.info.name, &plugin.info.effects));
    }
    for e in &plan.effects {
        let Some((name, kinds)) = emits.get(e.step.as_str()) else {
            continue; // `plan::check` names an effect of no step.
        };
        let kind = e.effect.kind();
        if !kinds.iter().any(|k| k == kind) {
            let declared = if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            };
            problems.push(format!(
                "effect {} (step `{}`): plugin `{name}` never emits `{kind}` effects (it declares: {declared}); the plan was edited ({remake})",
                e.id, e.step
            ));
        }
    }
    problems
}
