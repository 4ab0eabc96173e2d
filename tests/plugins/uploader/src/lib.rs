//! Plans `s3-upload-from-archive` for each input-archive member under
//! `prefix`, to `bucket` at the member's path less the prefix. Members listed
//! in `etags` (path -> ETag the upload must reproduce) carry that ETag; a
//! target that already exists is planned as a replacement of its ETag.
use imsflow_pdk::*;
use std::collections::BTreeMap;
struct Uploader;
#[derive(serde::Deserialize)]
struct With {
    prefix: String,
    bucket: String,
    #[serde(default)]
    etags: BTreeMap<String, String>,
    #[serde(default)]
    part_size: Option<u64>,
}
impl Step for Uploader {
    type With = With;
    fn describe() -> PluginInfo {
        plugin_info!(effects: ["s3-upload-from-archive"])
    }
    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let w = input.with;
        let members = archive::members().map_err(|e| host_err("listing the archive", e))?;
        let mut effects = Vec::new();
        for m in members.iter().filter(|m| m.path.starts_with(&w.prefix)) {
            let key = m.path[w.prefix.len()..].to_string();
            let existing = s3::head(&w.bucket, &key).map_err(|e| host_err("HEAD target", e))?;
            let precondition = match existing {
                None => TargetState::Absent,
                Some(h) => TargetState::Etag(h.etag),
            };
            effects.push(Effect::S3UploadFromArchive(S3UploadFromArchive {
                path: m.path.clone(),
                target: ObjectRef {
                    bucket: w.bucket.clone(),
                    key,
                },
                size: m.size,
                sha256: None,
                content_type: Some("application/octet-stream".into()),
                metadata: vec![("origin".into(), "imsflow-test".into())],
                part_size: w.part_size,
                etag: w.etags.get(&m.path).cloned(),
                precondition,
            }));
        }
        Ok(output(
            &serde_json::json!({ "uploads": effects.len() }),
            effects,
        ))
    }
}
export_step!(Uploader);
