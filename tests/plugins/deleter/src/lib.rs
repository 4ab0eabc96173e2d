//! Plans an `ims-delete` for each `[kind, id, mode]` it is given (mode:
//! soft, hard, hard-cascade, purge), with the record as IMS shows it now,
//! then, if asked, an `ims-empty` assertion.
use imsflow_pdk::*;
struct Deleter;
#[derive(serde::Deserialize)]
struct With {
    deletes: Vec<(String, String, String)>,
    #[serde(default)]
    assert_empty: Option<(bool, bool, bool)>,
}
impl Step for Deleter {
    type With = With;
    fn describe() -> PluginInfo {
        plugin_info!(services: ["ims"], effects: ["ims-delete", "assert"])
    }
    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let mut effects = Vec::new();
        for (kind, id, mode) in input.with.deletes {
            let (ims_kind, segment) = match kind.as_str() {
                "image" => (ImsKind::Image, "images"),
                "recipe" => (ImsKind::Recipe, "recipes"),
                "public-key" => (ImsKind::PublicKey, "public-keys"),
                _ => (ImsKind::Job, "jobs"),
            };
            let (mode, path) = match mode.as_str() {
                "soft" => (ImsDeleteMode::Soft, format!("v3/{segment}/{id}")),
                "hard" => (ImsDeleteMode::Hard(false), format!("v3/{segment}/{id}")),
                "hard-cascade" => (ImsDeleteMode::Hard(true), format!("v3/{segment}/{id}")),
                _ => (ImsDeleteMode::Purge, format!("v3/deleted/{segment}/{id}")),
            };
            let record = service_json("ims", &path)?;
            let name = record["name"].as_str().unwrap_or_default().to_string();
            effects.push(Effect::ImsDelete(ImsDelete {
                kind: ims_kind,
                id,
                name,
                mode,
                expect_json: record.to_string(),
            }));
        }
        if let Some((live, deleted, jobs)) = input.with.assert_empty {
            effects.push(Effect::Assert(Assertion::ImsEmpty(ImsEmpty {
                live,
                deleted,
                jobs,
            })));
        }
        Ok(output(
            &serde_json::json!({ "deletes": effects.len() }),
            effects,
        ))
    }
}
export_step!(Deleter);
