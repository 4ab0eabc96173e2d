//! `archive-read`: reads the input archive's `export.json` (the `archive`
//! grant), validates it against the archive's members with
//! `import_core::archive::read_export`, and outputs `ArchiveData`: the
//! records, the link sources and each `s3_data` artifact with its member's
//! size and what the export recorded (size, sha256, ETag, part size,
//! content type, metadata), plus `counts`. Fails with every problem listed.
use import_core::archive::read_export;
use imsflow_pdk::serde_json::{self, Value};
use imsflow_pdk::{Input, PluginInfo, Step, StepError, StepOutput, archive, host_err};

struct ArchiveRead;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct With {
    /// Largest `export.json` read (bytes); HPE's embeds bucket listings.
    #[serde(default = "default_cap")]
    max_index_bytes: u64,
}

fn default_cap() -> u64 {
    256 << 20
}

impl Step for ArchiveRead {
    type With = With;

    fn describe() -> PluginInfo {
        imsflow_pdk::plugin_info!()
    }

    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let members: Vec<(String, u64)> = archive::members()
            .map_err(|e| host_err("listing the input archive", e))?
            .into_iter()
            .map(|m| (m.path, m.size))
            .collect();
        if !members.iter().any(|(p, _)| p == "export.json") {
            return Err(StepError::Aborted(
                "the input archive has no export.json: it is not an IMS export".into(),
            ));
        }
        let text = archive::read_json("export.json", input.with.max_index_bytes)
            .map_err(|e| host_err("reading export.json", e))?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| StepError::Aborted(format!("export.json is not JSON: {e}")))?;
        drop(text);
        let data = read_export(&doc, &members)
            .map_err(|p| import_core::wit::problems("export.json", p))?;
        for w in &data.warnings {
            imsflow_pdk::warn(w);
        }
        let mut out = serde_json::to_value(&data).expect("serialisable");
        out["counts"] = data.counts();
        imsflow_pdk::info(&format!(
            "export.json ({} format): {}",
            data.format, out["counts"]
        ));
        Ok(imsflow_pdk::output(&out, vec![]))
    }
}

imsflow_pdk::export_step!(ArchiveRead);
