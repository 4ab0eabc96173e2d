//! `export` (HPE's export_ims_data.py, on the stock `export` workflow) and
//! `verify`.
use super::out::outln;
use super::{Cli, Exit};
use anyhow::Context;
use imsflow::connect::Connect;
use imsflow::workflow;
use serde::Deserialize;
use std::path::Path;

/// The export planner's output (`steps.plan.output` of `export-plan`), as
/// far as `export` prints it; other fields are ignored.
#[derive(Deserialize)]
struct ExportSummary {
    estimated_bytes: Option<u64>,
    counts: Counts,
}

#[derive(Deserialize)]
struct Counts {
    images: u64,
    recipes: u64,
    public_keys: u64,
    jobs: u64,
    /// Deleted records, when the export includes them.
    deleted: Option<DeletedCounts>,
}

/// Printed as the JSON object it is (`{"images":1,"public_keys":0,"recipes":2}`).
#[derive(Deserialize, serde::Serialize)]
struct DeletedCounts {
    images: u64,
    public_keys: u64,
    recipes: u64,
}

impl ExportSummary {
    fn from_output(output: &serde_json::Value) -> anyhow::Result<ExportSummary> {
        ExportSummary::deserialize(output).map_err(|e| {
            anyhow::anyhow!(
                "the export's `plan` step output is not an export-plan summary ({e}); the workflow's `plan` step must run the stock export-plan plugin"
            )
        })
    }
}

/// HPE's export flags, each a param of `workflows/export.toml`.
#[derive(clap::Args)]
pub struct ExportFlags {
    /// Also export soft-deleted images, public keys and recipes.
    #[arg(long)]
    include_deleted: bool,
    /// Do not abort when IMS jobs are still running.
    #[arg(long)]
    ignore_running_jobs: bool,
    /// Do not export the S3 artifacts that BOS session templates reference
    /// (boot images, kernels, initrds) beyond IMS's own.
    #[arg(long)]
    exclude_links_from_bos: bool,
    /// Do not export the S3 artifacts that BSS boot parameters reference
    /// beyond IMS's own.
    #[arg(long)]
    exclude_links_from_bss: bool,
    /// Do not export the S3 artifacts that the Cray product catalog (a
    /// Kubernetes ConfigMap) lists beyond IMS's own.
    #[arg(long)]
    exclude_links_from_product_catalog: bool,
    /// IMS records only: no S3 artifacts, no link sources, no tar.
    #[arg(long)]
    exclude_linked_artifacts: bool,
    /// Leave the export as a directory instead of a tar file.
    #[arg(long)]
    no_tar: bool,
    /// Switch off a site link source of the config file's
    /// `[[export.link_sources]]` (repeatable).
    #[arg(long = "exclude-links-from", value_name = "NAME")]
    pub exclude_links_from: Vec<String>,
}

impl ExportFlags {
    pub fn params(&self, target_dir: &Path) -> Vec<(String, String)> {
        let flag = |name: &str, on: bool| (name.to_string(), on.to_string());
        // Absolute, as the plan records it: `apply` may run from elsewhere.
        let target_dir = std::path::absolute(target_dir).unwrap_or_else(|_| target_dir.into());
        vec![
            ("target_dir".to_string(), target_dir.display().to_string()),
            flag("include_deleted", self.include_deleted),
            flag("ignore_running_jobs", self.ignore_running_jobs),
            flag("exclude_links_from_bos", self.exclude_links_from_bos),
            flag("exclude_links_from_bss", self.exclude_links_from_bss),
            flag(
                "exclude_links_from_product_catalog",
                self.exclude_links_from_product_catalog,
            ),
            flag("exclude_linked_artifacts", self.exclude_linked_artifacts),
            flag("no_tar", self.no_tar),
        ]
    }
}

pub async fn export(
    cli: &Cli,
    params: &[(String, String)],
    dry_run: bool,
    estimate: bool,
    exclude_links_from: &[String],
    connect: &Connect,
    cancel: &imsflow::cancel::Cancel,
) -> anyhow::Result<Exit> {
    let settings = super::settings(cli, connect)?;
    let sources = &settings.export.link_sources;
    let wf = if sources.is_empty() {
        if let Some(name) = exclude_links_from.first() {
            anyhow::bail!(
                "--exclude-links-from {name}: the config file names no site link sources ([[export.link_sources]])"
            );
        }
        workflow::load("export")?
    } else {
        let text = with_site_sources(sources, exclude_links_from)?;
        workflow::parse_with(
            "export (with the site link sources of the config file)",
            &text,
            Path::new("/"),
            &settings.site_services()?,
        )?
    };
    let report = super::run::execute(
        cli,
        &wf,
        params,
        dry_run || estimate,
        connect,
        &super::run::GateFlags::default(),
        cancel,
    )
    .await?;
    let plan = &report.plan;
    if estimate {
        let summary = ExportSummary::from_output(report.output("plan"))?;
        let bytes = summary.estimated_bytes.unwrap_or(plan.total_bytes());
        if cli.json {
            // The estimate is the answer, not the run that computed it.
            outln!("{}", serde_json::json!({ "estimated_bytes": bytes }));
        } else {
            outln!(
                "With specified export options, estimated total export size is: {}",
                imsflow::units::hpe(bytes)
            );
        }
    } else if cli.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if dry_run {
        let c = ExportSummary::from_output(report.output("plan"))?.counts;
        outln!(
            "Would export {} images, {} recipes, {} public keys, {} jobs{}",
            c.images,
            c.recipes,
            c.public_keys,
            c.jobs,
            match &c.deleted {
                None => String::new(),
                Some(deleted) => format!(", deleted: {}", serde_json::to_string(deleted)?),
            }
        );
        for e in &plan.effects {
            outln!("  + {}", e.effect.line());
        }
        outln!(
            "Total: {} effect(s), {}",
            plan.effects.len(),
            imsflow::units::bytes(plan.total_bytes())
        );
    } else if let Some(archive) = report.archive() {
        if archive.is_dir() {
            outln!("Data saved in directory: {}", archive.display());
        } else {
            outln!("Data saved to tar archive: {}", archive.display());
        }
        outln!("DONE!");
    }
    Ok(if dry_run && !estimate && !plan.effects.is_empty() {
        Exit::Pending
    } else {
        Exit::Ok
    })
}

/// A TOML value on one line (JSON's string escapes are TOML's).
fn inline_toml(v: &toml::Value) -> String {
    use toml::Value as V;
    match v {
        V::String(s) => serde_json::to_string(s).expect("a string"),
        V::Integer(i) => i.to_string(),
        V::Float(f) => format!("{f:?}"),
        V::Boolean(b) => b.to_string(),
        V::Datetime(d) => d.to_string(),
        V::Array(a) => format!(
            "[{}]",
            a.iter().map(inline_toml).collect::<Vec<_>>().join(", ")
        ),
        V::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!(
                    "{} = {}",
                    serde_json::to_string(k).expect("a key"),
                    inline_toml(v)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The stock export workflow with the site link sources as steps beside
/// `bos`, `bss` and `catalog`, each feeding `export-plan`'s `sources`.
fn with_site_sources(
    sources: &[imsflow::config::SiteLinkSource],
    excluded: &[String],
) -> anyhow::Result<String> {
    let stock = imsflow::stock::STOCK_WORKFLOWS
        .iter()
        .find(|(n, _)| *n == "export")
        .map(|(_, t)| *t)
        .expect("the stock export workflow");
    for name in excluded {
        if !sources.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
            anyhow::bail!(
                "--exclude-links-from {name}: no site link source has that name (the config file has: {})",
                known.join(", ")
            );
        }
    }
    let q = |s: &str| serde_json::to_string(s).expect("a string");
    let list = |l: &[String]| {
        format!(
            "[{}]",
            l.iter().map(|s| q(s)).collect::<Vec<_>>().join(", ")
        )
    };
    let mut steps = String::new();
    let mut ids = Vec::new();
    let mut feeds = Vec::new();
    for s in sources {
        let ok = s.name.starts_with(|c: char| c.is_ascii_lowercase())
            && s.name.len() <= 64
            && s.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            anyhow::bail!(
                "config file: link source name `{}`: use lowercase letters, digits, `-` and `_`, starting with a letter",
                s.name
            );
        }
        if ids.iter().any(|(n, _)| n == &s.name) {
            anyhow::bail!("config file: two link sources are named `{}`", s.name);
        }
        let id = format!("site_{}", s.name.replace('-', "_"));
        let when = if excluded.contains(&s.name) {
            "false"
        } else {
            "not params.exclude_linked_artifacts"
        };
        let plugin = s.plugin.to_str().ok_or_else(|| {
            anyhow::anyhow!("link source `{}`: the plugin path is not UTF-8", s.name)
        })?;
        let with: String = s
            .with
            .iter()
            .map(|(k, v)| format!("{} = {}\n", q(k), inline_toml(v)))
            .collect();
        steps.push_str(&format!(
            "[[steps]]\nid = {}\nplugin = {}\nsha256 = {}\nwhen = {}\nretries = 2\ngrants = {{ services = {}, buckets = {} }}\n\n[steps.with]\n{with}\n",
            q(&id), q(plugin), q(&s.sha256), q(when), list(&s.grants.services), list(&s.grants.buckets)
        ));
        feeds.push(format!(
            "{} = {}",
            q(&s.name),
            q(&format!("{{{{ steps.{id}.output }}}}"))
        ));
        ids.push((s.name.clone(), id));
    }
    let plan_step = "[[steps]]\nid = \"plan\"";
    let needs = "needs = [\"ims\", \"bos\", \"bss\", \"catalog\"]";
    let catalog = "product_catalog = \"{{ steps.catalog.output }}\"\n";
    if [plan_step, needs, catalog]
        .iter()
        .any(|s| stock.matches(s).count() != 1)
    {
        anyhow::bail!(
            "internal: the stock export workflow changed shape; site link sources cannot be added to it"
        );
    }
    let all_needs = format!(
        "needs = [\"ims\", \"bos\", \"bss\", \"catalog\", {}]",
        ids.iter()
            .map(|(_, id)| q(id))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(stock
        .replacen(plan_step, &format!("{steps}{plan_step}"), 1)
        .replacen(needs, &all_needs, 1)
        .replacen(
            catalog,
            &format!("{catalog}sources = {{ {} }}\n", feeds.join(", ")),
            1,
        ))
}

pub fn verify(cli: &Cli, archive: &Path) -> anyhow::Result<Exit> {
    use imsflow::archive::escaped;
    let shown = escaped(&archive.display().to_string()).into_owned();
    let report = imsflow::verify::verify(archive).with_context(|| format!("reading {shown}"))?;
    if cli.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if !cli.quiet {
            // What each artifact could be checked against; names from the
            // archive are escaped, so none can forge a line.
            for c in report.checks.iter().filter(|c| c.ok) {
                let checked = if c.checked.is_empty() {
                    "present".to_string()
                } else {
                    c.checked.join(", ")
                };
                outln!("ok ({checked}): {}", escaped(&c.url));
            }
        }
        for p in &report.problems {
            outln!("problem: {p}");
        }
        outln!(
            "{shown}: {} artifacts: {} verified by sha256, {} by ETag, {} by size only ({} read), {} problem(s)",
            report.artifacts,
            report.sha256_verified,
            report.etag_verified,
            report.size_only,
            imsflow::units::bytes(report.bytes_read),
            report.problems.len()
        );
    }
    Ok(if report.problems.is_empty() {
        Exit::Ok
    } else {
        Exit::Failed
    })
}
