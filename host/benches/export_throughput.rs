//! Export benchmark on a real Ceph RGW (needs IMSFLOW_TEST_S3_ENDPOINT and
//! IMSFLOW_TEST_CEPH_CONF, as the tests do). For systems with small and large
//! rootfs images it prints, measured in the same run:
//! - export throughput as a ratio to a raw concurrent aws-sdk GET of the same
//!   objects to nowhere (goal >= 0.9);
//! - the same throughput as a ratio to the disk's own fsynced write speed
//!   (an export must write the archive: on a slow disk that is the ceiling);
//! - peak RSS of the `imsflow export` process (its VmHWM, from `--json`;
//!   goal <= 100 MiB, flat in object size);
//! - bytes written to disk per archive byte (goal 1.0; HPE's script writes 2.0).
//! Run: `cargo bench --bench export_throughput` (IMSFLOW_BENCH_ROOTFS_MIB="64,256";
//! IMSFLOW_BENCH_OUT=/dev/shm puts the archive on tmpfs, to see the engine
//! without the disk).
use csm_sim::seed::SeedSpec;
use csm_sim::testing::System;
use std::process::Command;
use std::time::Instant;

fn main() {
    let sizes: Vec<usize> = std::env::var("IMSFLOW_BENCH_ROOTFS_MIB")
        .unwrap_or_else(|_| "64,256".into())
        .split(',')
        .map(|s| s.trim().parse().expect("sizes in MiB"))
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    println!(
        "{:>10} {:>10} {:>12} {:>12} {:>12} {:>9} {:>10} {:>10} {:>13}",
        "rootfs",
        "archive",
        "raw GET",
        "disk write",
        "export",
        "vs GET",
        "vs disk",
        "peak RSS",
        "disk/archive"
    );
    for mib in sizes {
        rt.block_on(bench(mib, cache.path()));
    }
}

async fn bench(rootfs_mib: usize, cache: &std::path::Path) {
    let spec = SeedSpec {
        seed: 3,
        images: 6,
        recipes: 2,
        public_keys: 1,
        deleted: 0,
        jobs: 1,
        running_jobs: 0,
        rootfs_size: rootfs_mib << 20,
    };
    let sys = System::start(&spec).await;
    let urls: Vec<String> = sys.expected.objects.keys().cloned().collect();

    // Baseline: the same objects, 8 concurrent GETs, bytes dropped.
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    let t = Instant::now();
    let mut total = 0u64;
    for chunk in urls.chunks(8) {
        let gets = chunk.iter().map(|u| {
            let (b, k) = csm_sim::s3::parse_url(u).unwrap();
            let client = s3.client().clone();
            let (b, k) = (b.to_string(), k.to_string());
            tokio::spawn(async move {
                let mut body = client
                    .get_object()
                    .bucket(b)
                    .key(k)
                    .send()
                    .await
                    .unwrap()
                    .body;
                let mut n = 0u64;
                while let Some(c) = body.try_next().await.unwrap() {
                    n += c.len() as u64;
                }
                n
            })
        });
        for g in futures_join(gets.collect()).await {
            total += g;
        }
    }
    let raw = t.elapsed();

    let out = match std::env::var_os("IMSFLOW_BENCH_OUT") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let run = |dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_imsflow"))
            .args(["-q", "--json", "export", dir.to_str().unwrap()])
            .env("IMSFLOW_CONFIG", sys.data.path().join("imsflow.toml"))
            .env("IMSFLOW_CACHE_DIR", cache)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    // Warm the compile cache so the measured run writes only the archive.
    let warm = tempfile::tempdir_in(out.path()).unwrap();
    assert!(run(warm.path()).status.success());
    drop(warm);
    let before = children_blocks_written();
    let t = Instant::now();
    let result = run(out.path());
    let took = t.elapsed();
    let after = children_blocks_written();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
    let peak_kib = report["peak_rss_kib"].as_u64().unwrap_or(0);
    let archive = std::fs::read_dir(out.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let archive_bytes = std::fs::metadata(&archive).unwrap().len();
    let written = (after - before) * 512;
    let disk = disk_write_speed(out.path(), archive_bytes);
    let gib_s =
        |bytes: u64, d: std::time::Duration| bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64;
    let export = gib_s(archive_bytes, took);
    println!(
        "{:>6} MiB {:>6.0} MiB {:>7.2} GiB/s {:>7.2} GiB/s {:>7.2} GiB/s {:>9.2} {:>10.2} {:>6.1} MiB {:>13.2}",
        rootfs_mib,
        archive_bytes as f64 / 1048576.0,
        gib_s(total, raw),
        disk,
        export,
        export / gib_s(total, raw),
        export / disk,
        peak_kib as f64 / 1024.0,
        written as f64 / archive_bytes as f64
    );
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<u64>>) -> Vec<u64> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// 512-byte blocks written to storage by waited-for children.
fn children_blocks_written() -> i64 {
    // SAFETY: getrusage only fills the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_oublock
}

/// GiB/s of writing `bytes` to a file in `dir` and fsyncing it: the disk's ceiling.
fn disk_write_speed(dir: &std::path::Path, bytes: u64) -> f64 {
    use std::io::Write;
    let path = dir.join("disk-baseline");
    let block = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    for _ in 0..bytes.div_ceil(1 << 20) {
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
    let took = t.elapsed();
    std::fs::remove_file(path).unwrap();
    bytes as f64 / took.as_secs_f64() / (1u64 << 30) as f64
}
