//! `write-json`: adds one JSON document to the output archive.
use imsflow_pdk::{ArchiveAddJson, Effect, Input, PluginInfo, Step, StepError, StepOutput};

struct WriteJson;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct With {
    /// Archive member path.
    path: String,
    /// Any JSON value.
    document: serde_json::Value,
}

impl Step for WriteJson {
    type With = With;

    fn describe() -> PluginInfo {
        imsflow_pdk::plugin_info!(effects: ["archive-add-json"])
    }

    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let json = input.with.document.to_string();
        let summary = serde_json::json!({ "path": input.with.path, "bytes": json.len() });
        let effect = Effect::ArchiveAddJson(ArchiveAddJson {
            path: input.with.path,
            json,
        });
        Ok(imsflow_pdk::output(&summary, vec![effect]))
    }
}

imsflow_pdk::export_step!(WriteJson);
