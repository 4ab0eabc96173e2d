use imsflow_pdk::*;
struct Sleep;
#[derive(serde::Deserialize)]
struct With {
    ms: u64,
    #[serde(default)]
    echo: serde_json::Value,
    /// When set, plan a JSON document at this archive path.
    #[serde(default)]
    write: Option<String>,
}
impl Step for Sleep {
    type With = With;
    fn describe() -> PluginInfo {
        plugin_info!()
    }
    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        std::thread::sleep(std::time::Duration::from_millis(input.with.ms));
        let effects = input
            .with
            .write
            .map(|path| {
                Effect::ArchiveAddJson(ArchiveAddJson {
                    path,
                    json: input.with.echo.to_string(),
                })
            })
            .into_iter()
            .collect();
        Ok(output(
            &serde_json::json!({ "echo": input.with.echo }),
            effects,
        ))
    }
}
export_step!(Sleep);
