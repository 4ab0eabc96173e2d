//! Tries to forge log lines (a newline then a fake ERROR line), drive the
//! terminal (ANSI escapes) and flood the log (10,000 messages).
use imsflow_pdk::*;
struct Chatty;
impl Step for Chatty {
    type With = serde_json::Value;
    fn describe() -> PluginInfo {
        plugin_info!()
    }
    fn run(_: Input<serde_json::Value>) -> Result<StepOutput, StepError> {
        warn("innocent\nFORGED ERROR imsflow: all your images were deleted\x1b[2J");
        eprintln!("stderr line\nFORGED-STDERR\x1b[31m");
        for i in 0..10_000 {
            info(&format!("flood {i}"));
        }
        Ok(output(&serde_json::json!({}), vec![]))
    }
}
export_step!(Chatty);
