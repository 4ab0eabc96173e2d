//! `bos-links`: S3 links in BOS v2 session templates: a boot set's `path`
//! when its `type` is `s3`, and URLs inside `kernel_parameters`.
use imsflow_pdk::links::{LinksOutput, kernel_parameter_urls};
use imsflow_pdk::serde_json::Value;
use imsflow_pdk::{Input, PluginInfo, Step, StepError, StepOutput};

struct BosLinks;

impl Step for BosLinks {
    type With = Value;

    fn describe() -> PluginInfo {
        imsflow_pdk::plugin_info!("bos")
    }

    fn run(_: Input<Value>) -> Result<StepOutput, StepError> {
        // No Cray-Tenant-Name header: the list holds every tenant's templates.
        let templates = imsflow_pdk::service_json("bos", "v2/sessiontemplates")?;
        let mut out = LinksOutput::default();
        for t in templates.as_array().into_iter().flatten() {
            let Some(name) = t.get("name").and_then(Value::as_str) else {
                return Err(StepError::Failed(
                    "a BOS session template has no string `name`".into(),
                ));
            };
            let Some(sets) = t.get("boot_sets").and_then(Value::as_object) else {
                imsflow_pdk::warn(&format!(
                    "Skipping malformed session template '{name}' (missing or invalid 'boot_sets' field)"
                ));
                continue;
            };
            for (set_name, set) in sets {
                if let Some(params) = set.get("kernel_parameters").and_then(Value::as_str) {
                    kernel_parameter_urls(params)
                        .into_iter()
                        .for_each(|u| out.add(u));
                }
                let (kind, path) = (
                    set.get("type").and_then(Value::as_str),
                    set.get("path").and_then(Value::as_str),
                );
                match (kind, path) {
                    (Some("s3"), Some(path)) => out.add(path),
                    (Some(_), Some(_)) => {}
                    _ => imsflow_pdk::warn(&format!(
                        "Skipping malformed boot set '{set_name}' in session template '{name}' (missing required 'type' or 'path' field)"
                    )),
                }
            }
        }
        Ok(imsflow_pdk::output(&out, vec![]))
    }
}

imsflow_pdk::export_step!(BosLinks);
