//! imsflow: a workflow engine whose steps are sandboxed WebAssembly component
//! plugins. Plugins compute and return typed effects; this host executes them.
//! See ARCHITECTURE.md for the code map and invariants.

pub mod apply;
pub mod archive;
pub mod backends;
pub mod bindings;
pub mod build_info;
pub mod cancel;
pub mod config;
pub mod connect;
pub mod engine;
pub mod etag;
pub mod journal;
pub mod k8s;
pub mod net;
pub mod observe;
pub mod owner;
pub mod plan;
pub mod plugin;
pub mod postcheck;
pub mod read;
pub mod readback;
pub mod s3;
pub mod sandbox;
pub mod target;
pub(crate) mod test_hooks;
pub mod transfer;
pub mod units;
pub mod verify;
pub mod workflow;

// Links from comments into `docs/` resolve (a test only).
#[cfg(test)]
mod doc_links;

// The modules form a DAG: no import cycle (a test only).
#[cfg(test)]
mod module_graph;

/// Stock plugins and workflows, embedded by build.rs.
pub mod stock {
    include!(concat!(env!("OUT_DIR"), "/stock.rs"));
}

/// The static (musl) build's allocator. With musl's own malloc the export
/// cost 12% more CPU per GiB than the glibc build; with mimalloc, within 1%
/// (`cargo bench --bench export_throughput`, IMSFLOW_BENCH_BIN). Its peak RSS
/// is higher, though (see ARCHITECTURE.md). glibc builds keep the system's.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
