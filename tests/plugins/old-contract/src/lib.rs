//! Built against `wit/plugin.wit` as it was at contract 0.1.0 (commit
//! 04d10b8), not through the SDK, which follows the current contract.
wit_bindgen::generate!({ path: "wit", world: "step" });

use imsflow::plugin::log::{Level, log};

struct Old;

impl Guest for Old {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "old-contract".into(),
            version: "0.1.0".into(),
            description: "built for imsflow:plugin@0.1.0".into(),
            services: vec![],
        }
    }

    fn run(_input: String) -> Result<StepOutput, StepError> {
        log(Level::Info, "a 0.1.0 plugin ran");
        Ok(StepOutput {
            output: "{}".into(),
            effects: vec![],
        })
    }
}

export!(Old);
