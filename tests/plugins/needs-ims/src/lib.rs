use imsflow_pdk::*;
struct NeedsIms;
impl Step for NeedsIms {
    type With = serde_json::Value;
    fn describe() -> PluginInfo {
        plugin_info!("ims")
    }
    fn run(_: Input<serde_json::Value>) -> Result<StepOutput, StepError> {
        Ok(output(&serde_json::Value::Null, vec![]))
    }
}
export_step!(NeedsIms);
