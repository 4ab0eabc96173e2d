//! Cost of saving and reading a plan file, as ratios to computing the plan
//! itself, for a plan of 5,000 small effects (one step of the `rogue` test
//! plugin emitting archive documents). Run: `cargo bench --bench plan_file`.
use imsflow::engine::{Engine, RunOptions};
use imsflow::plan::Plan;
use imsflow::sandbox::Runtime;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{median, test_plugins};

const EFFECTS: usize = 5000;
const ROUNDS: usize = 5;

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let plugins = test_plugins();
    let dir = tempfile::tempdir().unwrap();
    let emit: Vec<String> = (0..EFFECTS)
        .map(|_| "\"archive-add-json\"".into())
        .collect();
    let wf_path = dir.path().join("wf.toml");
    std::fs::write(
        &wf_path,
        format!(
            "version = 1\nname = \"many\"\ndescription = \"\"\n[archive]\noutput_dir = \"{}\"\n[[steps]]\nid = \"r\"\nplugin = \"{}/rogue.wasm\"\nwith = {{ emit = [{}] }}\ngrants = {{ effects = [\"archive-add-json\"] }}\n",
            dir.path().display(),
            plugins.display(),
            emit.join(", ")
        ),
    )
    .unwrap();
    let wf = imsflow::workflow::load(wf_path.to_str().unwrap()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let engine = Engine::new(
        Arc::new(Runtime::new(Some(cache.path().to_path_buf())).unwrap()),
        Default::default(),
    );
    let opts = RunOptions {
        params: vec![],
        dry_run: true,
        observer: imsflow::observe::silent(),
    };
    engine.plan(&wf, &opts).await.unwrap(); // compile and warm up
    let (mut plan_t, mut save_t, mut load_t) = (Vec::new(), Vec::new(), Vec::new());
    let path = dir.path().join("plan.json");
    let mut plan = None;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let planned = engine.plan(&wf, &opts).await.unwrap().plan;
        plan_t.push(t.elapsed());
        let t = Instant::now();
        planned.save(&path).unwrap();
        save_t.push(t.elapsed());
        let t = Instant::now();
        let loaded = Plan::load(&path).unwrap();
        load_t.push(t.elapsed());
        assert_eq!(loaded.effects.len(), EFFECTS);
        plan = Some(planned);
    }
    let (p, s, l) = (median(plan_t), median(save_t), median(load_t));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "plan of {} effects: file {} bytes",
        plan.map_or(0, |p| p.effects.len()),
        bytes
    );
    println!("compute the plan (baseline): {:>8.1} ms", ms(p));
    println!(
        "write the plan file:         {:>8.1} ms  ({:.2}x the plan computation)",
        ms(s),
        ms(s) / ms(p)
    );
    println!(
        "read and verify the file:    {:>8.1} ms  ({:.2}x the plan computation)",
        ms(l),
        ms(l) / ms(p)
    );
}
