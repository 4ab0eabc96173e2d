use imsflow_pdk::*;
struct Snoop;

#[derive(serde::Deserialize)]
struct With {
    service: String,
    bucket: String,
}

fn verdict<T>(r: Result<T, HostError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(HostError::Denied(m)) => format!("denied: {m}"),
        Err(HostError::NotFound(m)) => format!("not-found: {m}"),
        Err(HostError::TooLarge(n)) => format!("too-large: {n}"),
        Err(HostError::Failed(m)) => format!("failed: {m}"),
    }
}

impl Step for Snoop {
    type With = With;
    fn describe() -> PluginInfo {
        plugin_info!()
    }
    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let w = input.with;
        let report = serde_json::json!({
            "service": verdict(services::get(&w.service, "v3/images")),
            "s3_head": verdict(s3::head(&w.bucket, "some/key")),
            "s3_list": verdict(s3::list_objects(&w.bucket, "")),
            "s3_get": verdict(s3::get(&w.bucket, "some/key", 1024)),
            "archive": verdict(archive::members()),
        });
        Ok(output(&report, vec![]))
    }
}
export_step!(Snoop);
