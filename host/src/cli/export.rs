//! `export` (HPE's export_ims_data.py, on the stock `export` workflow) and
//! `verify`.
use super::{Cli, Exit};
use anyhow::Context;
use imsflow::connect::Connect;
use imsflow::workflow;
use std::path::Path;

/// HPE's export flags, each a param of `workflows/export.toml`.
#[derive(clap::Args)]
pub struct ExportFlags {
    /// Also export soft-deleted images, public keys and recipes.
    #[arg(long)]
    include_deleted: bool,
    /// Do not abort when IMS jobs are still running.
    #[arg(long)]
    ignore_running_jobs: bool,
    #[arg(long)]
    exclude_links_from_bos: bool,
    #[arg(long)]
    exclude_links_from_bss: bool,
    #[arg(long)]
    exclude_links_from_product_catalog: bool,
    /// IMS records only: no S3 artifacts, no link sources, no tar.
    #[arg(long)]
    exclude_linked_artifacts: bool,
    /// Leave the export as a directory instead of a tar file.
    #[arg(long)]
    no_tar: bool,
}

impl ExportFlags {
    pub fn params(&self, target_dir: &Path) -> Vec<(String, String)> {
        let flag = |name: &str, on: bool| (name.to_string(), on.to_string());
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
    connect: &Connect,
    cancel: &imsflow::cancel::Cancel,
) -> anyhow::Result<Exit> {
    let wf = workflow::load("export")?;
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
    let summary = report.output("plan");
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if estimate {
        let bytes = summary["estimated_bytes"]
            .as_u64()
            .unwrap_or(plan.total_bytes());
        println!(
            "With specified export options, estimated total export size is: {}",
            imsflow::units::hpe(bytes)
        );
    } else if dry_run {
        let c = &summary["counts"];
        println!(
            "Would export {} images, {} recipes, {} public keys, {} jobs{}",
            c["images"],
            c["recipes"],
            c["public_keys"],
            c["jobs"],
            if c["deleted"].is_null() {
                String::new()
            } else {
                format!(", deleted: {}", c["deleted"])
            }
        );
        for e in &plan.effects {
            println!("  + {}", e.effect.line());
        }
        println!(
            "Total: {} effect(s), {}",
            plan.effects.len(),
            imsflow::units::bytes(plan.total_bytes())
        );
    } else if let Some(archive) = report.archive() {
        if archive.is_dir() {
            println!("Data saved in directory: {}", archive.display());
        } else {
            println!("Data saved to tar archive: {}", archive.display());
        }
        println!("DONE!");
    }
    Ok(if dry_run && !estimate && !plan.effects.is_empty() {
        Exit::Pending
    } else {
        Exit::Ok
    })
}

pub fn verify(cli: &Cli, archive: &Path) -> anyhow::Result<Exit> {
    use imsflow::archive::escaped;
    let shown = escaped(&archive.display().to_string()).into_owned();
    let report = imsflow::verify::verify(archive).with_context(|| format!("reading {shown}"))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
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
                println!("ok ({checked}): {}", escaped(&c.url));
            }
        }
        for p in &report.problems {
            println!("problem: {p}");
        }
        println!(
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
