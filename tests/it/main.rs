//! The integration test binary: one binary, one module per capability. Find
//! the tests of a behaviour by what it is about:
//!
//! | about | module |
//! |---|---|
//! | the CLI: commands, `--json`, exit codes, log format | `cli` |
//! | workflows: validation messages and lines, templates | `workflow_ui`, `dag` |
//! | the sandbox: limits, traps, compile cache, plugin logs | `sandbox` |
//! | grants: what a step may emit and touch | `grants` |
//! | dry runs, saved plans, `show` | `dry_run`, `plan_apply`, `plan_show` |
//! | kill, signal and resume at exact points | `durable` |
//! | the stock export, against HPE's format | `export` |
//! | archives: owner-only, partials, member names, sizes | `archive` |
//! | `imsflow verify` | `verify` |
//! | S3 streaming between archives and buckets | `transfer` |
//! | the four imports, end to end | `import`, `end_state` |
//! | hostile `export.json` and import plans | `import_inputs` |
//! | IMS API and Kubernetes executors | `ims_effects`, `k8s` |
//! | the target system, configuration | `target` |
//! | the network: grants, caps, timeouts, TLS, secrets | `net` |
//! | local files: FIFOs, devices, foreign state dirs | `local_files` |
//! | site plugins: SDK, scaffold, example, contract | `site_plugins` |
//! | installing: `--version`, completion, man pages, example config | `install` |
mod support;

mod archive;
mod cli;
mod dag;
mod dry_run;
mod durable;
mod end_state;
mod export;
mod grants;
mod import;
mod import_inputs;
mod ims_effects;
mod install;
mod k8s;
mod local_files;
mod net;
mod plan_apply;
mod plan_show;
mod sandbox;
mod site_plugins;
mod target;
mod transfer;
mod verify;
mod workflow_ui;
