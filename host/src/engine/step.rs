//! One step call: `when`, `with` rendering, the sandboxed call with retries
//! and backoff, and the check that every emitted effect is granted.
use crate::backends::Backends;
use crate::plan::RunFacts;
use crate::plan::effect::Effect;
use crate::sandbox::{LoadedPlugin, Runtime, StepAccess};
use crate::workflow::{StepSpec, expr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct StepCall {
    pub runtime: Arc<Runtime>,
    pub plugin: Arc<LoadedPlugin>,
    pub spec: StepSpec,
    pub backends: Arc<Backends>,
    pub ctx: serde_json::Value,
    pub facts: RunFacts,
    pub started: Instant,
}

pub struct StepOutcome {
    /// `Ok(None)`: skipped by `when`.
    pub result: Result<Option<(serde_json::Value, Vec<Effect>)>, String>,
    pub attempts: u32,
    pub started_ms: f64,
    pub finished_ms: f64,
}

impl StepCall {
    pub async fn execute(self) -> StepOutcome {
        let started_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut attempts = 0;
        let result = self.attempt_all(&mut attempts).await;
        StepOutcome {
            result,
            attempts,
            started_ms,
            finished_ms: self.started.elapsed().as_secs_f64() * 1000.0,
        }
    }

    async fn attempt_all(
        &self,
        attempts: &mut u32,
    ) -> Result<Option<(serde_json::Value, Vec<Effect>)>, String> {
        let id = &self.spec.id;
        let ctx = minijinja::Value::from_serialize(&self.ctx);
        if let Some(when) = &self.spec.when
            && !expr::truthy(when, &ctx).map_err(|e| format!("step `{id}`: when: {e}"))?
        {
            tracing::info!("skipped: `when` is false");
            return Ok(None);
        }
        let mut with = serde_json::Map::new();
        for (key, value) in &self.spec.with {
            let v =
                expr::render(value, &ctx).map_err(|e| format!("step `{id}`: with.{key}: {e}"))?;
            with.insert(key.clone(), v);
        }
        let input = serde_json::json!({
            "with": with,
            "context": { "run": self.facts, "params": self.ctx["params"] },
        })
        .to_string();
        let access = StepAccess {
            step: id.clone(),
            plugin: self.plugin.info.name.clone(),
            grants: self.spec.grants.clone(),
            backends: self.backends.clone(),
        };
        let result = loop {
            *attempts += 1;
            match self
                .runtime
                .run_step(&self.plugin, &input, access.clone(), &self.spec.limits)
                .await
            {
                Ok(r) => break r,
                Err(e) if e.is_retryable() && *attempts <= self.spec.retries => {
                    let backoff = Duration::from_millis(200 << (*attempts - 1).min(6));
                    tracing::warn!(attempt = *attempts, "{e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(format!("step `{id}`: {e}")),
            }
        };
        // Deny by default: a plugin that emits what its step does not grant
        // fails the step, whatever it declared in `describe`.
        for effect in &result.effects {
            if let Err(why) = self.spec.grants.permits(effect) {
                return Err(format!(
                    "step `{id}`: plugin `{}` emitted `{}` ({}): {why}",
                    self.plugin.info.name,
                    effect.kind(),
                    effect.describe()
                ));
            }
        }
        Ok(Some((result.output, result.effects)))
    }
}
