use imsflow_pdk::*;
struct Flood;
#[derive(serde::Deserialize)]
struct With {
    mib: usize,
}
impl Step for Flood {
    type With = With;
    fn describe() -> PluginInfo {
        plugin_info!()
    }
    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let text = "x".repeat(input.with.mib << 20);
        Ok(output(&text, vec![]))
    }
}
export_step!(Flood);
