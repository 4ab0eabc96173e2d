//! `catalog-links`: `component_versions.s3[]` of every product version in the
//! Cray product catalog: the main `cray-product-catalog` ConfigMap **and**
//! the per-product `cray-product-catalog-<product>` ConfigMaps that catalogs
//! since 2.3 split them into (HPE's export reads only the main one).
use imsflow_pdk::links::LinksOutput;
use imsflow_pdk::serde_json::{self, Value};
use imsflow_pdk::{Input, PluginInfo, Step, StepError, StepOutput};

struct CatalogLinks;

#[derive(serde::Serialize)]
struct Output {
    links: Vec<String>,
    /// The ConfigMaps read, main first.
    configmaps: Vec<String>,
}

fn links_of(cm_name: &str, data: &serde_json::Map<String, Value>, out: &mut LinksOutput) {
    for (product, text) in data {
        let Some(text) = text.as_str() else { continue };
        let versions: Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                imsflow_pdk::warn(&format!(
                    "{cm_name}: product {product}: not YAML ({e}); skipped"
                ));
                continue;
            }
        };
        for (version, data) in versions.as_object().into_iter().flatten() {
            let Some(s3) = data.pointer("/component_versions/s3") else {
                continue;
            };
            let Some(items) = s3.as_array() else {
                imsflow_pdk::warn(&format!(
                    "{cm_name}: {product} {version}: component_versions.s3 is not a list; skipped"
                ));
                continue;
            };
            for item in items {
                match (
                    item.get("bucket").and_then(Value::as_str),
                    item.get("key").and_then(Value::as_str),
                ) {
                    (Some(b), Some(k)) => out.add(format!("s3://{b}/{k}")),
                    _ => imsflow_pdk::warn(&format!(
                        "{cm_name}: {product} {version}: an s3 item lacks bucket or key; skipped"
                    )),
                }
            }
        }
    }
}

impl Step for CatalogLinks {
    type With = Value;

    fn describe() -> PluginInfo {
        imsflow_pdk::plugin_info!("product-catalog")
    }

    fn run(_: Input<Value>) -> Result<StepOutput, StepError> {
        let list = imsflow_pdk::service_json("product-catalog", "configmaps")?;
        let mut maps: Vec<Value> = list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if maps.is_empty() {
            // Older systems may lack the label: fall back to the named ConfigMap.
            maps.push(imsflow_pdk::service_json(
                "product-catalog",
                "configmaps/cray-product-catalog",
            )?);
        }
        let name = |m: &Value| {
            m.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        // Main first, then the split ones by name: a stable order.
        maps.sort_by_key(|m| (name(m) != "cray-product-catalog", name(m)));
        let mut out = LinksOutput::default();
        for m in &maps {
            if let Some(data) = m.get("data").and_then(Value::as_object) {
                links_of(&name(m), data, &mut out);
            }
        }
        let output = Output {
            links: out.links,
            configmaps: maps.iter().map(name).collect(),
        };
        Ok(imsflow_pdk::output(&output, vec![]))
    }
}

imsflow_pdk::export_step!(CatalogLinks);
