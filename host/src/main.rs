//! The `imsflow` command line: a thin edge over the library.
use anyhow::Context;
use clap::{Parser, Subcommand};
use imsflow::backends::Backends;
use imsflow::connect::Connect;
use imsflow::engine::{Engine, RunError, RunOptions, RunReport};
use imsflow::runtime::Runtime;
use imsflow::workflow;
use std::process::ExitCode;
use std::sync::Arc;

const EXIT_CODES: &str = "\
Exit codes:
  0   success; for --dry-run: nothing to do
  1   error (invalid workflow, failed step, failed effect)
  2   --dry-run only: effects are pending (as terraform plan -detailed-exitcode)
  64  usage error (bad command line)
  130 interrupted (Ctrl-C); a partial archive is removed";

#[derive(Parser)]
#[command(name = "imsflow", version, about = "Workflow engine with sandboxed WebAssembly plugins; backs up and restores CSM IMS", after_help = EXIT_CODES)]
struct Cli {
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Connection config file [default: $IMSFLOW_CONFIG, ~/.config/imsflow/imsflow.toml].
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow (a stock name or a TOML file).
    #[command(after_help = EXIT_CODES)]
    Run {
        workflow: String,
        /// Set a workflow param: --param name=value (repeatable).
        #[arg(long = "param", short = 'p', value_parser = parse_kv)]
        params: Vec<(String, String)>,
        /// Run every step for real but execute no effect; print the plan.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        connect: Connect,
    },
    /// Export IMS data and its S3 artifacts (the stock `export` workflow), as
    /// HPE's export_ims_data.py does, into TARGET_DIR.
    #[command(after_help = EXIT_CODES)]
    Export {
        /// Existing directory for the archive [default: the current directory].
        target_dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        flags: ExportFlags,
        /// Print the estimated export size and stop (no archive is written).
        #[arg(long)]
        estimate_size: bool,
        /// List what would be exported, with sizes; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        connect: Connect,
    },
    /// Check an export archive (tar or directory): every artifact export.json
    /// lists is present, with the recorded size and sha256. Exit 0 or 1.
    Verify { archive: std::path::PathBuf },
    /// Check workflow files without running them.
    Validate {
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Stock workflows.
    Workflows {
        #[command(subcommand)]
        command: ListOnly,
    },
    /// Stock plugins.
    Plugins {
        #[command(subcommand)]
        command: ListOnly,
    },
}

#[derive(Subcommand)]
enum ListOnly {
    List,
}

/// HPE's export flags, each a param of `workflows/export.toml`.
#[derive(clap::Args)]
struct ExportFlags {
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
    fn params(&self, target_dir: &std::path::Path) -> Vec<(String, String)> {
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

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected name=value, got `{s}`"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli);
    let runtime = tokio::runtime::Runtime::new().expect("starting the async runtime");
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = dispatch(&cli) => r,
            _ = tokio::signal::ctrl_c() => Err(interrupted()),
        }
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = if e.to_string().starts_with("interrupted:") {
                130
            } else {
                1
            };
            if cli.json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// Ctrl-C: nothing was renamed into place; remove what was half-written.
fn interrupted() -> anyhow::Error {
    let removed = imsflow::archive::remove_partials();
    let what = if removed.is_empty() {
        "no archive was being written".to_string()
    } else {
        let names: Vec<_> = removed.iter().map(|p| p.display().to_string()).collect();
        format!("removed the partial archive {}", names.join(", "))
    };
    anyhow::anyhow!("interrupted: {what}; nothing was saved under a final archive name")
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (_, 0) => "info",
        (_, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IMSFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,imsflow={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn runtime() -> anyhow::Result<Arc<Runtime>> {
    Ok(Arc::new(
        Runtime::new(Runtime::default_cache_dir())
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .context("starting the Wasm runtime")?,
    ))
}

async fn dispatch(cli: &Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Run {
            workflow,
            params,
            dry_run,
            connect,
        } => {
            let wf = workflow::load(workflow)?;
            let report = execute(cli, &wf, params, *dry_run, connect).await?;
            print_report(cli, &report);
            Ok(if *dry_run && !report.effects.is_empty() {
                2
            } else {
                0
            })
        }
        Command::Export {
            target_dir,
            flags,
            estimate_size,
            dry_run,
            connect,
        } => {
            let params = flags.params(target_dir.as_deref().unwrap_or(std::path::Path::new(".")));
            export(
                cli,
                &params,
                *dry_run || *estimate_size,
                *estimate_size,
                connect,
            )
            .await
        }
        Command::Verify { archive } => verify(cli, archive),
        Command::Validate { files } => validate(cli, files).await,
        Command::Workflows {
            command: ListOnly::List,
        } => list_workflows(cli),
        Command::Plugins {
            command: ListOnly::List,
        } => list_plugins(cli).await,
    }
}

/// Runs a workflow, connecting to the CSM only if a step reads from it.
async fn execute(
    cli: &Cli,
    wf: &workflow::Workflow,
    params: &[(String, String)],
    dry_run: bool,
    connect: &Connect,
) -> anyhow::Result<RunReport> {
    let needs_csm = wf
        .steps
        .iter()
        .any(|s| !s.grants.services.is_empty() || !s.grants.buckets.is_empty());
    let backends = if needs_csm {
        let settings = match imsflow::connect::config_file(cli.config.as_deref()) {
            Some(file) => connect.clone().with_file(&file)?,
            None => connect.clone(),
        };
        settings
            .connect()
            .await
            .context("connecting to the CSM (see the README, \"Connecting to a CSM\")")?
    } else {
        Backends::default()
    };
    let engine = Engine::new(runtime()?, backends);
    let opts = RunOptions {
        params: params.to_vec(),
        dry_run,
        progress: !cli.json && !cli.quiet,
    };
    match engine.run(wf, &opts).await {
        Ok(report) => Ok(report),
        Err(RunError::StepsFailed { failed, report }) => {
            print_report(cli, &report);
            let lines: Vec<_> = failed.iter().map(|(_, e)| e.clone()).collect();
            anyhow::bail!(
                "{} step(s) failed; nothing was applied:\n  {}",
                failed.len(),
                lines.join("\n  ")
            )
        }
        Err(e) => Err(e).with_context(|| format!("running workflow `{}`", wf.name)),
    }
}

async fn export(
    cli: &Cli,
    params: &[(String, String)],
    dry_run: bool,
    estimate: bool,
    connect: &Connect,
) -> anyhow::Result<u8> {
    let wf = workflow::load("export")?;
    let report = execute(cli, &wf, params, dry_run, connect).await?;
    let plan = report
        .steps
        .iter()
        .find(|s| s.id == "plan")
        .map(|s| s.output.clone())
        .unwrap_or_default();
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if estimate {
        let bytes = plan["estimated_bytes"]
            .as_u64()
            .unwrap_or(report.total_bytes);
        println!(
            "With specified export options, estimated total export size is: {}",
            imsflow::units::hpe(bytes)
        );
    } else if dry_run {
        let c = &plan["counts"];
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
        for e in &report.effects {
            println!("  + {}", e.effect.line());
        }
        println!(
            "Total: {} effect(s), {}",
            report.effects.len(),
            imsflow::units::bytes(report.total_bytes)
        );
    } else if let Some(archive) = &report.archive {
        if archive.is_dir() {
            println!("Data saved in directory: {}", archive.display());
        } else {
            println!("Data saved to tar archive: {}", archive.display());
        }
        println!("DONE!");
    }
    Ok(if dry_run && !estimate && !report.effects.is_empty() {
        2
    } else {
        0
    })
}

fn verify(cli: &Cli, archive: &std::path::Path) -> anyhow::Result<u8> {
    let report = imsflow::verify::verify(archive)
        .with_context(|| format!("reading {}", archive.display()))?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for p in &report.problems {
            println!("problem: {p}");
        }
        println!(
            "{}: {} artifacts, {} verified by sha256 ({} read), {} problem(s)",
            archive.display(),
            report.artifacts,
            report.checksummed,
            imsflow::units::bytes(report.bytes_read),
            report.problems.len()
        );
    }
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}

fn print_report(cli: &Cli, report: &RunReport) {
    if cli.json {
        println!("{}", serde_json::to_string_pretty(report).unwrap());
        return;
    }
    if cli.quiet {
        return;
    }
    for s in &report.steps {
        let took = match (s.started_ms, s.finished_ms) {
            (Some(a), Some(b)) => format!(" in {:.0} ms", b - a),
            _ => String::new(),
        };
        println!(
            "step {:<20} {:<8}{took}, {} effect(s)",
            s.id,
            format!("{:?}", s.status).to_lowercase(),
            s.effects
        );
    }
    let verb = if report.dry_run {
        "would apply"
    } else {
        "applied"
    };
    if report.dry_run {
        for e in &report.effects {
            println!("  + {}", e.effect.line());
        }
    }
    let count = if report.dry_run {
        report.effects.len()
    } else {
        report.applied
    };
    println!(
        "{verb} {count} effect(s), {}",
        imsflow::units::bytes(report.total_bytes)
    );
    if let Some(archive) = &report.archive {
        println!("Data saved to: {}", archive.display());
    }
}

async fn validate(cli: &Cli, files: &[String]) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let mut bad = 0;
    let mut results = Vec::new();
    for file in files {
        let outcome = match workflow::load(file) {
            Ok(wf) => wf.load_plugins(&rt).await.map(|_| wf),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(wf) => {
                if !cli.json {
                    println!("{file}: ok ({} steps)", wf.steps.len());
                }
                results.push(serde_json::json!({ "file": file, "ok": true }));
            }
            Err(e) => {
                bad += 1;
                if !cli.json {
                    eprintln!("{e}");
                }
                let errors: Vec<_> = e.0.iter().map(|d| serde_json::json!({"line": d.line, "column": d.column, "message": d.message})).collect();
                results.push(serde_json::json!({ "file": file, "ok": false, "errors": errors }));
            }
        }
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    if bad > 0 {
        anyhow::bail!("{bad} of {} workflow file(s) are invalid", files.len());
    }
    Ok(0)
}

fn list_workflows(cli: &Cli) -> anyhow::Result<u8> {
    let mut rows = Vec::new();
    for (name, _) in imsflow::stock::STOCK_WORKFLOWS {
        let wf = workflow::load(name)?;
        rows.push(serde_json::json!({ "name": name, "description": wf.description, "steps": wf.steps.len(),
            "params": wf.params.iter().map(|p| serde_json::json!({"name": p.name, "type": p.ty, "default": p.default, "description": p.description})).collect::<Vec<_>>() }));
        if !cli.json {
            println!("{name:<20} {}", wf.description);
            for p in &wf.params {
                let default = p
                    .default
                    .as_ref()
                    .map(|d| format!(" (default {d})"))
                    .unwrap_or_default();
                println!(
                    "    --param {}=<{:?}>{default}  {}",
                    p.name, p.ty, p.description
                );
            }
        }
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(0)
}

async fn list_plugins(cli: &Cli) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let mut rows = Vec::new();
    for name in imsflow::plugin::stock_names() {
        let bytes = imsflow::plugin::load(&imsflow::plugin::PluginRef::Stock(name.into()))?;
        let plugin = rt.load(&bytes).await?;
        let i = &plugin.info;
        if !cli.json {
            println!("{:<20} {:<8} sha256:{}", i.name, i.version, i.sha256);
            println!("    {}", i.description);
            println!(
                "    services: {}",
                if i.services.is_empty() {
                    "-".into()
                } else {
                    i.services.join(", ")
                }
            );
            println!("    imports:  {}", i.imports.join(", "));
        }
        rows.push(serde_json::to_value(i)?);
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(0)
}
