//! A workflow's plugins, loaded into the Wasm runtime and checked against
//! its grants: each plugin's declared services and effect kinds must be
//! granted to its step. Here, not in `workflow/`, so that the file format
//! needs no Wasm.
use crate::sandbox::{LoadedPlugin, Runtime};
use crate::workflow::{Diagnostic, Workflow, WorkflowError};
use std::sync::Arc;

/// Loads every step's plugin and checks that the services each plugin
/// declares are granted to its step.
pub async fn load_plugins(
    wf: &Workflow,
    runtime: &Runtime,
) -> Result<Vec<Arc<LoadedPlugin>>, WorkflowError> {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    for step in &wf.steps {
        let (line, column) = step.plugin_at;
        let mut err = |message: String| {
            errors.push(Diagnostic {
                file: wf.file.clone(),
                line,
                column,
                message,
            })
        };
        let bytes = match crate::plugin::load(&step.plugin) {
            Ok(b) => b,
            Err(e) => {
                err(format!("step `{}`: {e}", step.id));
                continue;
            }
        };
        match runtime.load(&bytes).await {
            Ok(plugin) => {
                for service in &plugin.info.services {
                    if !step.grants.services.contains(service) {
                        err(format!(
                            "step `{}`: plugin `{}` reads service `{service}`, which the step does not grant; add it to the step's `grants.services`",
                            step.id, plugin.info.name
                        ));
                    }
                }
                for kind in &plugin.info.effects {
                    if !step.grants.effects.contains(kind) {
                        err(format!(
                            "step `{}`: plugin `{}` may emit `{kind}` effects, which the step does not grant; add \"{kind}\" to the step's `grants.effects`",
                            step.id, plugin.info.name
                        ));
                    }
                }
                loaded.push(plugin);
            }
            Err(e) => err(format!("step `{}`: {e}", step.id)),
        }
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(WorkflowError(errors))
    }
}
