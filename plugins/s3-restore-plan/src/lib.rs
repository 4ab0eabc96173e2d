//! `s3-restore-plan`: what S3 holds of an import. HEADs every target of the
//! archive (`import_core::restore::targets`) and every current record's
//! link, reads the manifests of current images (a delete removes what they
//! list), and decides each target with nothing deleted yet: `upload`,
//! `present`, `conflict`, `missing` or `unavailable`. Emits no effects; its
//! output (`import_core::restore::S3State`) feeds the strategy plugins,
//! which decide again for their mode after its deletes.
use import_core::archive::ArchiveData;
use import_core::ims::Ims;
use import_core::restore::{self, Manifest, S3State};
use import_core::s3::{Head, split_url};
use imsflow_pdk::{HostError, Input, PluginInfo, Step, StepError, StepOutput, s3};
use std::collections::BTreeMap;

struct S3RestorePlan;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct With {
    /// The output of `archive-read`.
    archive: ArchiveData,
    /// The output of `ims-fetch` (with `include_deleted = true`).
    ims: Ims,
    /// Largest manifest read (bytes).
    #[serde(default = "default_cap")]
    max_manifest_bytes: u64,
}

fn default_cap() -> u64 {
    16 << 20
}

#[derive(Default)]
struct Seen {
    objects: BTreeMap<String, Option<Head>>,
    errors: Vec<String>,
    denied: bool,
}

impl Seen {
    fn head(&mut self, url: &str) {
        if self.objects.contains_key(url) {
            return;
        }
        let Some((bucket, key)) = split_url(url) else {
            return;
        };
        match s3::head(bucket, key) {
            Ok(h) => {
                self.objects
                    .insert(url.into(), h.map(import_core::wit::head));
            }
            Err(e) => {
                self.denied |= matches!(e, HostError::Denied(_));
                self.errors.push(format!("HEAD {url}: {e:?}"));
            }
        }
    }
}

impl Step for S3RestorePlan {
    type With = With;

    fn describe() -> PluginInfo {
        imsflow_pdk::plugin_info!()
    }

    fn run(input: Input<With>) -> Result<StepOutput, StepError> {
        let w = input.with;
        let mut seen = Seen::default();
        for url in restore::urls_to_head(&w.archive, &w.ims) {
            seen.head(&url);
        }
        let mut manifests = BTreeMap::new();
        for url in restore::manifests_to_read(&w.ims, &seen.objects) {
            let (bucket, key) = split_url(&url).expect("a record link");
            let read = s3::get(bucket, key, w.max_manifest_bytes)
                .map_err(|e| format!("{e:?}"))
                .and_then(|b| restore::manifest_links(&b));
            let manifest = match read {
                Ok(links) => Manifest { links, error: None },
                Err(e) => Manifest {
                    links: Vec::new(),
                    error: Some(e),
                },
            };
            for l in &manifest.links {
                seen.head(l);
            }
            manifests.insert(url, manifest);
        }
        if !seen.errors.is_empty() {
            let message = format!(
                "S3: {} failed call(s):\n  - {}",
                seen.errors.len(),
                seen.errors.join("\n  - ")
            );
            return Err(if seen.denied {
                StepError::Denied(message)
            } else {
                StepError::Failed(message)
            });
        }
        let targets = restore::plan_all(&w.archive, &seen.objects);
        let summary = restore::summarize(&targets);
        imsflow_pdk::info(&format!(
            "S3 targets: {} to upload ({} bytes), {} present ({} bytes), {} in conflict, {} missing from the archive, {} unavailable",
            summary.upload.len(),
            summary.upload_bytes,
            summary.present.len(),
            summary.present_bytes,
            summary.conflict.len(),
            summary.missing.len(),
            summary.unavailable.len()
        ));
        let state = S3State {
            objects: seen.objects,
            manifests,
            targets,
            summary,
        };
        Ok(imsflow_pdk::output(&state, vec![]))
    }
}

imsflow_pdk::export_step!(S3RestorePlan);
