//! The CLI edge: parsing, logging, dispatch, and the mapping of outcomes to
//! exit codes. `--json` prints exactly one JSON document on stdout.
mod export;
mod import;
mod list;
mod out;
mod review;
mod run;
mod runs;
mod view;

use clap::{Parser, Subcommand};
use imsflow::backends::SiteServices;
use imsflow::connect::Connect;
use out::outln;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const EXIT_CODES: &str = "\
Exit codes:
  0   success; for --dry-run: nothing to do; stopped at the gate --until named
  1   error (invalid workflow, failed step, refused or failed plan)
  2   effects are pending: --dry-run (as terraform plan -detailed-exitcode), or
      a gate was not approved (continue with `imsflow resume RUN --yes`)
  64  usage error (bad command line)
  130 interrupted (Ctrl-C, SIGTERM or SIGHUP): apply stops between effects,
      rolls back the one in progress and says how to resume; a second
      signal exits at once";

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The command ran and reported what failed itself (e.g. `verify`).
    Failed = 1,
    Pending = 2,
}

#[derive(Parser)]
#[command(
    name = "imsflow",
    version,
    about = "Workflow engine with sandboxed WebAssembly plugins; backs up and restores CSM IMS",
    after_help = EXIT_CODES,
    // `--version` is ours: it takes `--json`, which clap's would not see.
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the version, commit, build date, plugin contract, wasmtime
    /// version and target (with --json: one JSON document).
    #[arg(short = 'V', long)]
    version: bool,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true, help_heading = "Global")]
    json: bool,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, help_heading = "Global", action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global",
        conflicts_with = "verbose"
    )]
    quiet: bool,
    /// Connection config file [default: $IMSFLOW_CONFIG, ~/.config/imsflow/imsflow.toml,
    /// /etc/imsflow/imsflow.toml].
    #[arg(long, global = true, help_heading = "Global")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow (a stock name or a TOML file): plan, then apply.
    #[command(after_help = EXIT_CODES)]
    #[command(display_order = 10)]
    Run {
        /// A stock workflow's name (`imsflow workflows`) or a workflow TOML file.
        workflow: String,
        #[command(flatten)]
        params: run::Params,
        /// Run every step for real but execute no effect; print the plan.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        gates: run::GateFlags,
        #[command(flatten)]
        connect: Connect,
    },
    /// Plan a workflow and save the plan for review (`show`) and `apply`.
    #[command(display_order = 11)]
    Plan {
        /// A stock workflow's name (`imsflow workflows`) or a workflow TOML file.
        workflow: String,
        #[command(flatten)]
        params: run::Params,
        /// Where to write the plan (JSON, owner-only).
        #[arg(short, long)]
        out: PathBuf,
        #[command(flatten)]
        connect: Connect,
    },
    /// Apply exactly a saved plan
    ///
    /// First it checks that the plan is intact, made by this imsflow and its
    /// plugins, and not stale. The journal
    /// (`PLAN.journal`) records every effect; applying a plan again continues
    /// where it stopped.
    #[command(after_help = EXIT_CODES, display_order = 13)]
    Apply {
        /// A plan file (`imsflow plan -o` or `import --plan-out`).
        plan: PathBuf,
        #[command(flatten)]
        gates: run::GateFlags,
        #[command(flatten)]
        connect: Connect,
    },
    /// Continue a run that stopped (killed, interrupted, failed, or at a gate)
    ///
    /// Effects journalled as done are skipped, the one in progress is
    /// checked, and the rest applied. RUN is a run id (`imsflow runs list`),
    /// or a plan or journal file.
    #[command(after_help = EXIT_CODES, display_order = 4)]
    Resume {
        /// A run id (`imsflow runs`), or a plan or journal file.
        run: String,
        #[command(flatten)]
        gates: run::GateFlags,
        #[command(flatten)]
        connect: Connect,
    },
    /// Past and unfinished runs, from their journals (`runs` alone lists them).
    #[command(display_order = 5)]
    Runs {
        #[command(subcommand)]
        command: Option<RunsCommand>,
    },
    /// Render a saved plan for review: one line per effect, grouped, with totals.
    #[command(display_order = 12)]
    Show {
        /// A plan file.
        plan: PathBuf,
    },
    /// Export IMS data and its S3 artifacts into an archive (export_ims_data.py)
    ///
    /// The stock `export` workflow, as HPE's export_ims_data.py does it, into
    /// TARGET_DIR: the same tar, which HPE's import reads.
    #[command(after_help = EXIT_CODES, display_order = 1)]
    Export {
        /// Existing directory for the archive [default: the current directory].
        target_dir: Option<PathBuf>,
        #[command(flatten)]
        flags: export::ExportFlags,
        /// Print the estimated export size and stop (no archive is written).
        #[arg(long)]
        estimate_size: bool,
        /// List what would be exported, with sizes; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        connect: Connect,
    },
    /// Import an export archive (import_ims_data.py, same flags and modes)
    ///
    /// The stock `import-<mode>` workflow: preflight, pre-import backup (to
    /// -b), an approval gate before the first destructive phase, the apply
    /// under a journal (`imsflow resume`), and a post-import verification.
    #[command(after_help = EXIT_CODES, display_order = 2)]
    Import {
        #[command(flatten)]
        flags: import::ImportFlags,
        #[command(flatten)]
        gates: run::GateFlags,
        #[command(flatten)]
        connect: Connect,
    },
    /// Check an export archive's artifacts against its export.json
    ///
    /// A tar file or its directory: every artifact export.json lists is
    /// present under s3_artifacts/, with the recorded size, and its
    /// bytes reproduce the recorded sha256 and S3 ETag (HPE archives have the
    /// ETag only). Says per artifact what it could check. Exit 0 or 1.
    #[command(display_order = 3)]
    Verify {
        /// An export archive: a tar file or its unpacked directory.
        archive: PathBuf,
    },
    /// Check workflow files without running them.
    #[command(display_order = 20)]
    Validate {
        /// Workflow TOML files, or stock workflow names.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Stock workflows (`workflows` alone lists them).
    #[command(display_order = 21)]
    Workflows {
        #[command(subcommand)]
        command: Option<ListOnly>,
    },
    /// Stock plugins; inspect a plugin file; scaffold a site plugin.
    #[command(display_order = 22)]
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Print a shell completion script
    ///
    /// For example `imsflow completions bash > /etc/bash_completion.d/imsflow`.
    #[command(display_order = 30)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (imsflow.1 and one per subcommand) into DIR; the
    /// package ships them.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// The stock plugins: name, version, sha256, services, effects, imports.
    List,
    /// What a plugin file is: name, version, sha256 (its pin), contract
    /// version, declared services and effect kinds, and the imports it links.
    /// Refuses a file that is not a component of imsflow's `step` world.
    Inspect {
        /// A plugin component (`.wasm`).
        file: PathBuf,
    },
    /// Scaffolds a site plugin crate in DIR/NAME: Cargo.toml, src/lib.rs
    /// with a passing FakeHost test, and a README (test, build, pin, plug in).
    New {
        /// What to scaffold.
        #[arg(value_enum)]
        kind: list::Template,
        /// Crate name: lowercase letters, digits and `-`, starting with a letter.
        name: String,
        /// Parent directory of the new crate.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The SDK (`plugins/sdk` of an imsflow checkout) the crate depends on
        /// [default: the one this imsflow was built from, if it is there].
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ListOnly {
    /// Each stock workflow: name, description and parameters.
    List,
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Every run: id, workflow, state, effects done/total, start time.
    List,
    /// One run's effects with their outcomes.
    Show {
        /// A run id (`imsflow runs`), or a plan or journal file.
        run: String,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.version {
        return print_version(cli.json);
    }
    let Some(command) = &cli.command else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::from(64);
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let cancel = imsflow::cancel::Cancel::default();
    let outcome = runtime.block_on(async {
        tokio::spawn(watch_signals(cancel.clone()));
        dispatch(&cli, command, &cancel).await
    });
    if let Some(e) = out::finish() {
        // Output was lost (not a closed pipe, which is fine): say so, once.
        eprintln!("error: writing to standard output: {e}");
        if matches!(outcome, Ok(Exit::Ok)) {
            return ExitCode::from(1);
        }
    }
    match outcome {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            if cli.json {
                outln!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            // After a signal, whatever the command reported, it was interrupted.
            ExitCode::from(if cancel.is_cancelled() { 130 } else { 1 })
        }
    }
}

fn print_version(json: bool) -> ExitCode {
    let build = imsflow::build_info::BuildInfo::current();
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&build).unwrap_or_default()
        );
    } else {
        outln!("{}", build.lines().join("\n"));
    }
    ExitCode::SUCCESS
}

/// SIGINT (Ctrl-C), SIGTERM (`kill`, systemd, Kubernetes) and SIGHUP (a
/// closed terminal or ssh session) all cancel the run; a second one exits at
/// once.
async fn watch_signals(cancel: imsflow::cancel::Cancel) {
    let first = interruption().await;
    cancel.cancel(first);
    let second = interruption().await;
    eprintln!("error: {second} again: exiting now, without finishing or rolling back");
    std::process::exit(130);
}

async fn interruption() -> &'static str {
    use tokio::signal::unix::SignalKind;
    /// Waits for one signal; never returns if it cannot be handled.
    async fn next(kind: SignalKind, name: &'static str) -> &'static str {
        match tokio::signal::unix::signal(kind) {
            Ok(mut signal) => {
                signal.recv().await;
                name
            }
            Err(e) => {
                tracing::warn!("cannot handle {name}: {e}");
                std::future::pending().await
            }
        }
    }
    tokio::select! {
        name = next(SignalKind::interrupt(), "SIGINT") => name,
        name = next(SignalKind::terminate(), "SIGTERM") => name,
        name = next(SignalKind::hangup(), "SIGHUP") => name,
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
        // Log lines suspend a progress bar instead of landing under it.
        .with_writer(|| view::LogWriter)
        // Colour only for a terminal: escape codes garble logs and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// The configuration's site services (`[services]`), read before a workflow
/// file is validated, so that a step granted one is not refused as naming
/// an unknown service.
fn site_services(cli: &Cli) -> anyhow::Result<SiteServices> {
    Ok(match imsflow::config::config_file(cli.config.as_deref())? {
        Some(file) => Connect::default().with_file(&file)?.site_services()?,
        None => SiteServices::default(),
    })
}

/// The connection settings: flags and environment, then the config file.
fn settings(cli: &Cli, connect: &Connect) -> anyhow::Result<Connect> {
    Ok(match imsflow::config::config_file(cli.config.as_deref())? {
        Some(file) => connect.clone().with_file(&file)?,
        None => connect.clone(),
    })
}

fn runtime() -> anyhow::Result<Arc<imsflow::sandbox::Runtime>> {
    use anyhow::Context;
    Ok(Arc::new(
        imsflow::sandbox::Runtime::new(imsflow::sandbox::Runtime::default_cache_dir())
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .context("starting the Wasm runtime")?,
    ))
}

/// Commands that apply effects watch `cancel` themselves (they stop between
/// effects and roll back); the others simply stop.
async fn dispatch(
    cli: &Cli,
    command: &Command,
    cancel: &imsflow::cancel::Cancel,
) -> anyhow::Result<Exit> {
    let stop = async {
        cancel.cancelled().await;
        anyhow::bail!("interrupted by {}", cancel.why())
    };
    match command {
        Command::Run {
            workflow,
            params,
            dry_run,
            gates,
            connect,
        } => {
            run::run(
                cli,
                workflow,
                &params.params,
                *dry_run,
                connect,
                gates,
                cancel,
            )
            .await
        }
        Command::Plan {
            workflow,
            params,
            out,
            connect,
        } => run::plan(cli, workflow, &params.params, out, connect, cancel).await,
        Command::Apply {
            plan,
            gates,
            connect,
        } => run::apply(cli, plan, connect, gates, cancel).await,
        Command::Resume {
            run,
            gates,
            connect,
        } => run::resume(cli, run, connect, gates, cancel).await,
        Command::Export {
            target_dir,
            flags,
            estimate_size,
            dry_run,
            connect,
        } => {
            let dir = target_dir.as_deref().unwrap_or(std::path::Path::new("."));
            let params = flags.params(dir);
            export::export(
                cli,
                &params,
                *dry_run,
                *estimate_size,
                &flags.exclude_links_from,
                connect,
                cancel,
            )
            .await
        }
        Command::Import {
            flags,
            gates,
            connect,
        } => import::import(cli, flags, gates, connect, cancel).await,
        other => tokio::select! {
            r = simple(cli, other) => r,
            e = stop => e,
        },
    }
}

async fn simple(cli: &Cli, command: &Command) -> anyhow::Result<Exit> {
    match command {
        Command::Show { plan } => run::show(cli, plan),
        Command::Verify { archive } => export::verify(cli, archive),
        Command::Validate { files } => list::validate(cli, files).await,
        Command::Workflows {
            command: None | Some(ListOnly::List),
        } => list::workflows(cli),
        Command::Plugins {
            command: PluginsCommand::List,
        } => list::plugins(cli).await,
        Command::Plugins {
            command: PluginsCommand::Inspect { file },
        } => list::inspect(cli, file).await,
        Command::Plugins {
            command:
                PluginsCommand::New {
                    kind,
                    name,
                    dir,
                    sdk,
                },
        } => list::scaffold(cli, *kind, name, dir, sdk.as_deref()),
        Command::Runs {
            command: None | Some(RunsCommand::List),
        } => runs::list(cli),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "imsflow", &mut script);
            out::bytes(&script);
            Ok(Exit::Ok)
        }
        Command::Manpages { dir } => {
            use anyhow::Context;
            use clap::CommandFactory;
            std::fs::create_dir_all(dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
                .with_context(|| format!("writing the man pages into {}", dir.display()))?;
            Ok(Exit::Ok)
        }
        Command::Runs {
            command: Some(RunsCommand::Show { run }),
        } => runs::show(cli, run),
        Command::Run { .. }
        | Command::Plan { .. }
        | Command::Apply { .. }
        | Command::Resume { .. }
        | Command::Export { .. }
        | Command::Import { .. } => unreachable!("dispatched above"),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    fn undocumented(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.get_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() {
                missing.push(path.clone());
            }
            undocumented(sub, &path, missing);
        }
    }

    /// `imsflow --help` lists the commands a line each (the long text is in
    /// `help CMD`), the admin's own first.
    #[test]
    fn the_command_list_is_a_line_each_with_export_import_verify_first() {
        let cli = Cli::command();
        let mut commands: Vec<_> = cli.get_subcommands().filter(|c| !c.is_hide_set()).collect();
        commands.sort_by_key(|c| c.get_display_order());
        let names: Vec<_> = commands.iter().map(|c| c.get_name()).collect();
        assert_eq!(names[..3], ["export", "import", "verify"], "{names:?}");
        for c in commands {
            let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
            // 100 columns minus the name column.
            assert!(about.len() <= 85, "{}: {about}", c.get_name());
        }
    }

    /// `--help` is where an admin learns a flag: none is blank.
    #[test]
    fn every_command_flag_and_argument_has_help_text() {
        let mut missing = Vec::new();
        undocumented(&Cli::command(), "imsflow", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
