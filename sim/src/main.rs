//! `csm-sim`: seed a simulated CSM into a data directory, then serve it.
use anyhow::Context;
use clap::{Parser, Subcommand};
use csm_sim::s3::S3Config;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "csm-sim",
    version,
    about = "A simulated HPE CSM (IMS, BOS, BSS, STS, Keycloak, Kubernetes subset) over a real S3"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct S3Args {
    /// S3 (Ceph RGW) endpoint the simulated system stores artifacts in.
    #[arg(long, env = "CSM_SIM_S3_ENDPOINT")]
    s3_endpoint: String,
    #[arg(long, env = "CSM_SIM_S3_ACCESS_KEY")]
    s3_access_key: String,
    #[arg(long, env = "CSM_SIM_S3_SECRET_KEY", hide_env_values = true)]
    s3_secret_key: String,
}

impl S3Args {
    fn config(self) -> S3Config {
        S3Config {
            endpoint: self.s3_endpoint,
            access_key: self.s3_access_key,
            secret_key: self.s3_secret_key,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a deterministic system in an empty data directory and its S3 buckets.
    Seed {
        /// An empty directory: the system's records, kubeconfig and
        /// imsflow.toml are written there.
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        spec: csm_sim::seed::SeedSpec,
    },
    /// Serve a seeded data directory on loopback until interrupted.
    Serve {
        /// A directory `seed` (or `demo`) filled.
        #[arg(long)]
        data: PathBuf,
        /// 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The simulated IMS workload's failure switches and rollout timing
        /// (also settable while serving: `POST /sim/k8s/knobs`).
        #[command(flatten)]
        knobs: csm_sim::k8s::cluster::Knobs,
    },
    /// Seed a system into an empty data directory, serve it, show what it
    /// serves, and keep serving until interrupted.
    Demo {
        /// An empty directory: the system's records, kubeconfig and
        /// imsflow.toml are written there.
        #[arg(long)]
        data: PathBuf,
        /// 0 picks a free port.
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        spec: csm_sim::seed::SeedSpec,
        /// As `serve` takes them.
        #[command(flatten)]
        knobs: csm_sim::k8s::cluster::Knobs,
    },
    /// Print the seeder's expected answers for a data directory.
    Expected {
        /// A directory `seed` (or `demo`) filled.
        #[arg(long)]
        data: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CSM_SIM_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Seed { data, s3, spec } => {
            let cfg = s3.config();
            let expected = csm_sim::seed::seed(&data, &cfg, &spec)
                .await
                .context("seeding")?;
            println!(
                "seeded {}: {} images, {} recipes, {} public keys, {} jobs, {} S3 objects",
                data.display(),
                expected.ims["images"].len(),
                expected.ims["recipes"].len(),
                expected.ims["public_keys"].len(),
                expected.jobs.len(),
                expected.objects.len()
            );
        }
        Command::Serve { data, port, knobs } => {
            let running = csm_sim::serve(&data, port)
                .await
                .with_context(|| format!("serving {}", data.display()))?;
            running.state.set_knobs(knobs);
            println!(
                "csm-sim ready: {} (kubeconfig: {}, imsflow config: {})",
                running.base_url,
                data.join("kubeconfig").display(),
                data.join("imsflow.toml").display()
            );
            tokio::signal::ctrl_c().await?;
        }
        Command::Demo {
            data,
            port,
            s3,
            spec,
            knobs,
        } => {
            let running = csm_sim::demo::run(&data, &s3.config(), &spec, port).await?;
            running.state.set_knobs(knobs);
            println!("csm-sim ready: {}", running.base_url);
            tokio::signal::ctrl_c().await?;
        }
        Command::Expected { data } => {
            let text = std::fs::read_to_string(data.join("expected.json"))
                .context("reading expected.json")?;
            println!("{text}");
        }
    }
    Ok(())
}
