use imsflow_pdk::*;
struct Spin;
impl Step for Spin {
    type With = serde_json::Value;
    fn describe() -> PluginInfo {
        plugin_info!()
    }
    fn run(_: Input<serde_json::Value>) -> Result<StepOutput, StepError> {
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}
export_step!(Spin);
