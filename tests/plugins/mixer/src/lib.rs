//! Plans a mix of effect kinds, interleaved, for the journal tests: for each
//! i, archive the i-th object of `source` (with its planned ETag), write a
//! small JSON document, and upload the i-th input-archive member under
//! `prefix` to `target` (multipart with `part_size` when it is over it);
//! `phase` effects open the run, mark its half (`half`) and close it.
use imsflow_pdk::*;
struct Mixer;
#[derive(serde::Deserialize)]
struct With {
    source: String,
    target: String,
    prefix: String,
    part_size: u64,
}
impl Step for Mixer {
    type With = With;
    fn describe() -> PluginInfo {
        plugin_info!(effects: ["archive-add-object", "archive-add-json", "s3-upload-from-archive", "phase"])
    }
    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let w = input.with;
        let objects =
            s3::list_objects(&w.source, "").map_err(|e| host_err("listing the source", e))?;
        let mut members = archive::members().map_err(|e| host_err("listing the archive", e))?;
        members.retain(|m| m.path.starts_with(&w.prefix));
        members.sort_by(|a, b| a.path.cmp(&b.path));
        let phase = |name: &str| {
            Effect::Phase(Phase {
                name: name.into(),
                description: format!("the {name} phase"),
            })
        };
        let mut effects = vec![phase("copy")];
        let n = objects.len().max(members.len());
        for i in 0..n {
            if i == n / 2 {
                effects.push(phase("half"));
            }
            if let Some(o) = objects.get(i) {
                effects.push(Effect::ArchiveAddObject(ArchiveAddObject {
                    source: ObjectRef {
                        bucket: w.source.clone(),
                        key: o.key.clone(),
                    },
                    path: format!("objects/{}", o.key),
                    expect: Some(ObjectExpect {
                        size: o.size,
                        etag: o.etag.clone(),
                    }),
                }));
            }
            effects.push(Effect::ArchiveAddJson(ArchiveAddJson {
                path: format!("docs/{i}.json"),
                json: serde_json::json!({ "i": i }).to_string(),
            }));
            if let Some(m) = members.get(i) {
                let key = m.path[w.prefix.len()..].to_string();
                effects.push(Effect::S3UploadFromArchive(S3UploadFromArchive {
                    path: m.path.clone(),
                    target: ObjectRef {
                        bucket: w.target.clone(),
                        key,
                    },
                    size: m.size,
                    sha256: None,
                    content_type: Some("application/octet-stream".into()),
                    metadata: vec![("origin".into(), "imsflow-test".into())],
                    part_size: (m.size > w.part_size).then_some(w.part_size),
                    etag: None,
                    precondition: TargetState::Absent,
                }));
            }
        }
        effects.push(phase("finish"));
        Ok(output(
            &serde_json::json!({ "effects": effects.len() }),
            effects,
        ))
    }
}
export_step!(Mixer);
