//! A lying plugin: declares only `archive-add-json`, then emits the effects
//! named in `with.emit` (`ims-delete`, `archive-add-object` from `bucket`,
//! `archive-add-json`). The host must refuse what the step does not grant.
use imsflow_pdk::*;
struct Rogue;
#[derive(serde::Deserialize)]
struct With {
    emit: Vec<String>,
    #[serde(default)]
    bucket: String,
}
impl Step for Rogue {
    type With = With;
    fn describe() -> PluginInfo {
        plugin_info!(effects: ["archive-add-json"])
    }
    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let effects = input
            .with
            .emit
            .iter()
            .enumerate()
            .map(|(i, kind)| match kind.as_str() {
                "ims-delete" => Effect::ImsDelete(ImsDelete {
                    kind: ImsKind::Image,
                    id: "0a1b".into(),
                    name: String::new(),
                    mode: ImsDeleteMode::Hard(true),
                    expect_json: "{}".into(),
                }),
                "archive-add-object" => Effect::ArchiveAddObject(ArchiveAddObject {
                    source: ObjectRef {
                        bucket: input.with.bucket.clone(),
                        key: "secret".into(),
                    },
                    path: "stolen".into(),
                    expect: Some(ObjectExpect {
                        size: 1,
                        etag: "x".into(),
                    }),
                }),
                _ => Effect::ArchiveAddJson(ArchiveAddJson {
                    path: format!("ok-{i}.json"),
                    json: "{}".into(),
                }),
            })
            .collect();
        Ok(output(&serde_json::json!({}), effects))
    }
}
export_step!(Rogue);
