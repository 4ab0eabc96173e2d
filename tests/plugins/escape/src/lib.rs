//! Tries to reach beyond its service grant: each `[service, path]` pair of
//! `with.calls` goes to `services::get` as given, and the output lists what
//! the host answered, so a test can assert every escape was refused.
use imsflow_pdk::*;
struct Escape;

#[derive(serde::Deserialize)]
struct With {
    calls: Vec<(String, String)>,
}

fn verdict(r: Result<ServiceResponse, HostError>) -> String {
    match r {
        Ok(resp) => format!("ok: {}", resp.status),
        Err(HostError::Denied(m)) => format!("denied: {m}"),
        Err(HostError::NotFound(m)) => format!("not-found: {m}"),
        Err(HostError::TooLarge(n)) => format!("too-large: {n}"),
        Err(HostError::Failed(m)) => format!("failed: {m}"),
    }
}

impl Step for Escape {
    type With = With;
    fn describe() -> PluginInfo {
        plugin_info!()
    }
    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let verdicts: Vec<String> = input
            .with
            .calls
            .iter()
            .map(|(service, path)| verdict(services::get(service, path)))
            .collect();
        Ok(output(&serde_json::json!({ "verdicts": verdicts }), vec![]))
    }
}
export_step!(Escape);
