//! The integration test binary: one binary, one module per capability.
mod support;

mod cli;
mod dag;
mod dry_run;
mod export;
mod sandbox;
mod transfer;
mod workflow_ui;
