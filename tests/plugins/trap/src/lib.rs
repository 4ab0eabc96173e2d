use imsflow_pdk::*;
struct Trap;
impl Step for Trap {
    type With = serde_json::Value;
    fn describe() -> PluginInfo {
        plugin_info!()
    }
    fn run(_: Input<serde_json::Value>) -> Result<StepOutput, StepError> {
        panic!("deliberate panic from the trap test plugin")
    }
}
export_step!(Trap);
