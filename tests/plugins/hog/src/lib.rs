use imsflow_pdk::*;
struct Hog;
impl Step for Hog {
    type With = serde_json::Value;
    fn describe() -> PluginInfo {
        plugin_info!()
    }
    fn run(_: Input<serde_json::Value>) -> Result<StepOutput, StepError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1u8; 16 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}
export_step!(Hog);
