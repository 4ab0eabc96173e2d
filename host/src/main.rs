//! The `imsflow` command line: a thin edge over the library.
use anyhow::Context;
use clap::{Parser, Subcommand};
use imsflow::backends::{Backends, ServiceClient};
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
  64  usage error (bad command line)";

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
        connect: ConnectArgs,
    },
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

#[derive(clap::Args)]
struct ConnectArgs {
    /// CSM API gateway base URL.
    #[arg(long, env = "IMSFLOW_GATEWAY")]
    gateway: Option<String>,
    /// Bearer token for the gateway.
    #[arg(long, env = "IMSFLOW_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    match runtime.block_on(dispatch(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if cli.json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
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
        } => run(cli, workflow, params, *dry_run, connect).await,
        Command::Validate { files } => validate(cli, files).await,
        Command::Workflows {
            command: ListOnly::List,
        } => list_workflows(cli),
        Command::Plugins {
            command: ListOnly::List,
        } => list_plugins(cli).await,
    }
}

async fn run(
    cli: &Cli,
    name: &str,
    params: &[(String, String)],
    dry_run: bool,
    connect: &ConnectArgs,
) -> anyhow::Result<u8> {
    let wf = workflow::load(name)?;
    let mut backends = Backends::default();
    if let Some(gateway) = &connect.gateway {
        backends.services = Some(ServiceClient {
            http: reqwest::Client::new(),
            gateway: gateway.clone(),
            token: connect.token.clone(),
        });
    }
    let engine = Engine::new(runtime()?, backends);
    let opts = RunOptions {
        params: params.to_vec(),
        dry_run,
        progress: !cli.json && !cli.quiet,
    };
    match engine.run(&wf, &opts).await {
        Ok(report) => {
            print_report(cli, &report);
            Ok(if dry_run && !report.effects.is_empty() {
                2
            } else {
                0
            })
        }
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
