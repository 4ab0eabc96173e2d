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
/// (`cargo bench --bench export_throughput`, IMSFLOW_BENCH_BIN). glibc builds
/// keep the system's.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Called first in `main`: the static build's mimalloc (v3), tuned for a
/// lower peak RSS. As built, the static export peaked at 106-127 MiB against
/// the glibc build's 69-78 (`cargo bench --bench export_throughput`):
/// - mimalloc asks for transparent huge pages on its arenas (and on a node
///   with THP `always` the kernel gives them unasked), so a touched byte can
///   cost 2 MiB. THP goes off for the process.
/// - v3 gives freed memory back to the OS after 1 s; the export's buffers
///   turn over faster than that. 10 ms is v2's default.
///
/// With both, 82-86 MiB against the glibc build's 71-83 in the same runs
/// (ARCHITECTURE.md has the figures).
pub fn tune_allocator() {
    #[cfg(target_env = "musl")]
    {
        // Best effort: a kernel without THP has nothing to turn off.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
        // `mi_option_purge_delay` in v3's mimalloc.h; libmimalloc-sys names
        // no constant for it. Set only where that option holds v3's default,
        // so that another layout is left alone rather than misconfigured.
        const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        // SAFETY: mi_option_get/set read and write mimalloc's option table,
        // any index below its length, from any thread.
        unsafe {
            if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000 {
                libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10);
            }
        }
    }
}
