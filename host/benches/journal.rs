//! Journal overhead: `imsflow apply` of a plan of 5,000 small uploads (1 KiB
//! members of a tar, to a real Ceph RGW), with the journal as shipped, as a
//! ratio to the same apply with the journal's fsyncs turned off
//! (`IMSFLOW_TEST_JOURNAL_NO_FSYNC`). Goal: at most 1.2x.
//!
//! Needs the Ceph test cluster: `. target/ceph/env.sh` (see the README), then
//! `cargo bench --bench journal`. The journal and archive live in a
//! directory on disk (`IMSFLOW_BENCH_DIR`, default the target directory), not
//! tmpfs, where fsync would cost nothing.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{median, test_plugins};

const EFFECTS: usize = 5000;
const ROUNDS: usize = 3;

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let plugins = test_plugins();
    let sys = csm_sim::testing::System::start(&csm_sim::testing::small_spec()).await;
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    s3.create_bucket("bench").await.unwrap();
    let base = std::env::var_os("IMSFLOW_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        std::path::PathBuf::from,
    );
    let dir = tempfile::tempdir_in(base).unwrap();
    let input = dir.path().join("input.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&input).unwrap());
    for i in 0..EFFECTS {
        let body = vec![(i % 251) as u8; 1024];
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        tar.append_data(&mut h, format!("data/k{i:05}"), &body[..])
            .unwrap();
    }
    tar.finish().unwrap();
    let wf = dir.path().join("wf.toml");
    std::fs::write(
        &wf,
        format!(
            "version = 1\nname = \"uploads\"\ndescription = \"\"\n[archive]\ninput = \"{}\"\n[[steps]]\nid = \"up\"\nplugin = \"{}/uploader.wasm\"\nwith = {{ prefix = \"data/\", bucket = \"bench\" }}\ngrants = {{ archive = true, buckets = [\"bench\"], effects = [\"s3-upload-from-archive\"] }}\n",
            input.display(),
            plugins.display()
        ),
    )
    .unwrap();
    let config = sys.data.path().join("imsflow.toml");
    let state = dir.path().join("state");
    let plan = dir.path().join("plan.json");
    let imsflow = |args: &[&str], no_fsync: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_imsflow"));
        cmd.args(args)
            .env("IMSFLOW_CONFIG", &config)
            .env("IMSFLOW_STATE_DIR", &state)
            .env_remove("KUBECONFIG");
        if no_fsync {
            cmd.env("IMSFLOW_TEST_JOURNAL_NO_FSYNC", "1");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "imsflow {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    imsflow(
        &[
            "-q",
            "plan",
            wf.to_str().unwrap(),
            "-o",
            plan.to_str().unwrap(),
        ],
        false,
    );
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS * 2 {
        // Alternate, so that drift in the cluster hits both alike.
        let no_fsync = round % 2 == 1;
        empty(&s3, "bench").await;
        let _ = std::fs::remove_file(imsflow::journal::path_for(&plan));
        let t = Instant::now();
        imsflow(&["-q", "apply", plan.to_str().unwrap()], no_fsync);
        let took = t.elapsed();
        if no_fsync { &mut off } else { &mut on }.push(took);
    }
    let journal = std::fs::metadata(imsflow::journal::path_for(&plan))
        .map(|m| m.len())
        .unwrap_or(0);
    let (on, off) = (median(on), median(off));
    let s = |d: Duration| d.as_secs_f64();
    println!("apply of {EFFECTS} uploads of 1 KiB, median of {ROUNDS}; journal {journal} bytes");
    println!("journal fsyncs off (baseline): {:>7.2} s", s(off));
    println!(
        "journal as shipped:            {:>7.2} s  ({:.3}x the baseline; goal <= 1.2x)",
        s(on),
        s(on) / s(off)
    );
}

/// Deletes every object of `bucket`, 1,000 per request.
async fn empty(s3: &csm_sim::s3::S3, bucket: &str) {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    loop {
        let listed = s3
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let keys: Vec<ObjectIdentifier> = listed
            .contents()
            .iter()
            .filter_map(|o| ObjectIdentifier::builder().key(o.key()?).build().ok())
            .collect();
        if keys.is_empty() {
            return;
        }
        s3.client()
            .delete_objects()
            .bucket(bucket)
            .delete(Delete::builder().set_objects(Some(keys)).build().unwrap())
            .send()
            .await
            .unwrap();
    }
}
