//! The integration test binary: one binary, one module per capability.
mod support;

mod cli;
mod dag;
mod dry_run;
mod durable;
mod end_state;
mod export;
mod grants;
mod hardening_archive;
mod hardening_files;
mod hardening_import;
mod hardening_inputs;
mod hardening_net;
mod import;
mod ims_effects;
mod k8s;
mod plan_apply;
mod plan_show;
mod sandbox;
mod site_plugins;
mod target;
mod transfer;
mod workflow_ui;
