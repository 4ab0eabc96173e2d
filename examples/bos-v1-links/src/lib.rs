//! `bos-v1-links`: S3 links in BOS v1 session templates, for imsflow's export.
use imsflow_pdk::links::{Link, urls_in};
use imsflow_pdk::{Host, StepError};

/// The step's `with` values.
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct With {
    /// Service path of the list (default `v1/sessiontemplate`).
    pub path: Option<String>,
}

pub fn links(host: &impl Host, with: With) -> Result<Vec<Link>, StepError> {
    let path = with.path.as_deref().unwrap_or("v1/sessiontemplate");
    let mut out = Vec::new();
    for template in host.get_json_list("bos", path)? {
        let sets = template["boot_sets"].as_object().into_iter().flatten();
        for (_, set) in sets {
            for field in ["path", "kernel_parameters"] {
                out.extend(set[field].as_str().map(urls_in).unwrap_or_default());
            }
        }
    }
    Ok(out)
}

imsflow_pdk::link_source!(links, services: ["bos"]);

#[cfg(test)]
mod tests {
    use imsflow_pdk::{FakeHost, serde_json::json};
    #[test]
    fn finds_boot_set_links() {
        let set = json!({"type": "s3", "path": "s3://boot-images/abc/manifest.json",
            "kernel_parameters": "console=ttyS0 root=craycps-s3:s3://boot-images/abc/rootfs:etag"});
        let templates = json!([{"name": "cos", "boot_sets": {"compute": set}}]);
        let host = FakeHost::new().service_json("bos", "v1/sessiontemplate", templates);
        let links = super::links(&host, Default::default()).unwrap();
        let want = "s3://boot-images/abc/manifest.json s3://boot-images/abc/rootfs";
        assert_eq!(links.join(" "), want);
    }
}
