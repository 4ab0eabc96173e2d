//! `bss-links`: S3 links in BSS boot parameters: `initrd`, `kernel`, and
//! URLs inside `params`.
use imsflow_pdk::links::{LinksOutput, kernel_parameter_urls};
use imsflow_pdk::serde_json::Value;
use imsflow_pdk::{Input, PluginInfo, Step, StepError, StepOutput};

struct BssLinks;

impl Step for BssLinks {
    type With = Value;

    fn describe() -> PluginInfo {
        imsflow_pdk::plugin_info!("bss")
    }

    fn run(_: Input<Value>) -> Result<StepOutput, StepError> {
        let entries = imsflow_pdk::service_json("bss", "boot/v1/bootparameters")?;
        let mut out = LinksOutput::default();
        for e in entries.as_array().into_iter().flatten() {
            for field in ["initrd", "kernel"] {
                if let Some(url) = e
                    .get(field)
                    .and_then(Value::as_str)
                    .filter(|u| u.starts_with("s3://"))
                {
                    out.add(url);
                }
            }
            if let Some(params) = e.get("params").and_then(Value::as_str) {
                kernel_parameter_urls(params)
                    .into_iter()
                    .for_each(|u| out.add(u));
            }
        }
        Ok(imsflow_pdk::output(&out, vec![]))
    }
}

imsflow_pdk::export_step!(BssLinks);
