//! Per-step overhead of the Wasm runtime: instantiate plus call of a trivial
//! plugin (stock `write-json`), warm and cold, with a native baseline of the
//! same work measured in the same run. Run: `cargo bench --bench step_overhead`.
use imsflow::backends::Backends;
use imsflow::plugin::{PluginRef, load};
use imsflow::sandbox::{Grants, Limits, Runtime, StepAccess};
use std::sync::Arc;
use std::time::Instant;

const CALLS: u32 = 2000;

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let cache = tempfile::tempdir().unwrap();
    let bytes = load(&PluginRef::Stock("write-json".into())).unwrap();
    let input = r#"{"with":{"path":"note.json","document":{"message":"hello"}},"context":{}}"#;

    let runtime = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let t = Instant::now();
    let plugin = runtime.load(&bytes).await.unwrap();
    let cold_compile = t.elapsed();

    let runtime2 = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let t = Instant::now();
    runtime2.load(&bytes).await.unwrap();
    let cold_cached = t.elapsed();

    let access = StepAccess {
        step: "bench".into(),
        plugin: plugin.info.name.clone(),
        grants: Grants::default(),
        backends: Arc::new(Backends::default()),
    };
    for _ in 0..100 {
        runtime
            .run_step(&plugin, input, access.clone(), &Limits::DEFAULT)
            .await
            .unwrap();
    }
    let t = Instant::now();
    for _ in 0..CALLS {
        runtime
            .run_step(&plugin, input, access.clone(), &Limits::DEFAULT)
            .await
            .unwrap();
    }
    let warm = t.elapsed() / CALLS;

    // Baseline: the same JSON work done natively.
    let t = Instant::now();
    for _ in 0..CALLS {
        let v: serde_json::Value = serde_json::from_str(input).unwrap();
        let json = v["with"]["document"].to_string();
        std::hint::black_box(
            serde_json::json!({ "path": v["with"]["path"], "bytes": json.len() }).to_string(),
        );
    }
    let native = t.elapsed() / CALLS;

    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
    println!("plugin: write-json ({} bytes)", bytes.bytes.len());
    println!(
        "cold, compile (Cranelift):        {:>10.1} us",
        us(cold_compile)
    );
    println!(
        "cold, from the on-disk cache:     {:>10.1} us  ({:.3}x of compile)",
        us(cold_cached),
        us(cold_cached) / us(cold_compile)
    );
    println!(
        "warm step (instantiate + call):   {:>10.1} us  (goal <= 1000 us)",
        us(warm)
    );
    println!(
        "native baseline (same JSON work): {:>10.1} us  (warm step = {:.0}x native)",
        us(native),
        us(warm) / us(native)
    );
}
