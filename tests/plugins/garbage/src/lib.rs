use imsflow_pdk::*;
struct Garbage;
impl Step for Garbage {
    type With = serde_json::Value;
    fn describe() -> PluginInfo {
        plugin_info!()
    }
    fn run(_: Input<serde_json::Value>) -> Result<StepOutput, StepError> {
        Ok(StepOutput {
            output: "this is {not json".into(),
            effects: vec![],
        })
    }
}
export_step!(Garbage);
