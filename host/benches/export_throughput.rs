//! Export benchmark on a real Ceph RGW (needs IMSFLOW_TEST_S3_ENDPOINT and
//! IMSFLOW_TEST_CEPH_CONF, as the tests do). For systems with small and large
//! rootfs images it prints, measured in the same run:
//! - export throughput as a ratio to a raw concurrent aws-sdk GET of the same
//!   objects to nowhere (goal >= 0.8: an export should cost little more
//!   than reading the objects);
//! - the same throughput as a ratio to the disk's own fsynced write speed
//!   (an export must write the archive: on a slow disk that is the ceiling);
//! - peak RSS of the `imsflow export` process (its VmHWM, from `--json`;
//!   goal <= 100 MiB, flat in object size);
//! - bytes written to disk per archive byte (goal 1.0; HPE's script writes 2.0).
//!
//! Run: `cargo bench --bench export_throughput` (IMSFLOW_BENCH_ROOTFS_MIB="64,256";
//! IMSFLOW_BENCH_OUT=/dev/shm puts the archive on tmpfs, to see the engine
//! without the disk; IMSFLOW_BENCH_BASE_BIN=<another imsflow build> measures
//! that one too, first, in the same run; IMSFLOW_BENCH_BIN=<an imsflow build>
//! measures that one instead of this build's; IMSFLOW_BENCH_ROUNDS repeats).
//! The static binary against the glibc one, export and import:
//! `IMSFLOW_BENCH_BASE_BIN=target/release/imsflow
//! IMSFLOW_BENCH_BIN=dist/imsflow cargo bench --bench export_throughput`.
//! It also prints CPU seconds per GiB (user + system) of the `imsflow`
//! process, of the raw GET client, and of the Ceph daemons: on a shared,
//! small machine wall-clock ratios swing with the load, CPU per byte does not.
//!
//! It also measures, in the same run and on the same objects, the floor of
//! any export that checksums and writes what it archives: the raw GET with
//! each object's sha256 computed as it arrives, then also written to a file
//! where the archive goes ("raw GET + sha256 + write").
//!
//! ## Measured (session 4: 2 vCPU VM, Ceph 16 memstore RGW + OSD on the same
//! 2 cores, archive on tmpfs, fresh cluster; `base` = the build before it)
//!
//! | rootfs  | vs raw GET | floor vs raw GET | vs floor | imsflow CPU s/GiB | peak RSS |
//! |---------|------------|------------------|----------|-------------------|----------|
//! | 64 MiB  | base 0.32-0.57, now 0.46-0.67 | 0.73-0.78 | 0.65-0.77 | base 2.25-2.75, now 1.8-1.95 | 71-75 MiB |
//! | 256 MiB | base 0.30-0.42, now 0.43-0.54 | 0.56-0.67 | 0.67-0.80 | base 2.15-2.7, now 1.5-1.6 | 74-78 MiB |
//!
//! What an export must do per byte costs, on this CPU (`cargo bench --bench
//! hashing`): sha256 0.54 CPU s/GiB (SHA-NI; aws-lc's is no faster), the
//! write into tmpfs 0.3-0.4 (page allocation in the VM), the receive about
//! 0.3, as the raw client's. The raw GET alone (0.3-0.4 client + 1.1-1.7
//! Ceph per GiB) nearly fills the 2 cores, so every CPU second the export
//! spends is taken from RGW: the floor itself reaches only 0.56-0.78x the
//! raw GET here, and the export 0.65-0.80x that floor (the rest: about 0.25 s
//! of planning per run, which weighs on small archives, and a copy per
//! block). What this session removed: the MD5 pass over every multipart
//! object (1.3 CPU s/GiB) wherever one common part size fits its ETag, and
//! the RGW's Nagle delay (`tcp_nodelay=1` in scripts/ceph-micro.sh: every
//! small GET had waited 40 ms for a delayed ACK). A separate sha256 thread
//! beside the writer was tried and measured no faster (CPU-bound, and the
//! blocks then cross cores).
//!
//! The restore direction (`imsflow import overwrite --yes` of the exported
//! archive after every artifact was removed, end to end: preflight, plugins,
//! backup, deletes, uploads, data files, restart, verification) against a raw
//! concurrent PUT of as many bytes, same run: 64 MiB rootfs 0.45-0.59x (base
//! 0.43x), 256 MiB 0.60-0.97x (base 0.49x), peak RSS 67-112 MiB;
//! extra disk: the backup's records only. The preflight now checks sha256
//! alone where the archive has it (`verify::Depth::Integrity`), not also
//! every multipart ETag's MD5s.
//!
//! ## The static binary against the glibc one (session 7; same runs, archive on tmpfs)
//!
//! | build (vs glibc release) | rootfs | export GiB/s ratio | export CPU s/GiB ratio | import ratio | peak RSS export / import |
//! |---|---|---|---|---|---|
//! | musl + mimalloc, round 1 | 64 MiB | 0.93 | 1.01 | 1.02 | 106 / 144 MiB (glibc 69 / 105) |
//! | musl + mimalloc, round 2 | 64 MiB | 0.96 | 0.81 | 1.13 | 106 / 78 MiB (glibc 69 / 61) |
//! | musl + mimalloc, round 1 | 256 MiB | 1.00 | 1.01 | 1.39 | 124 / 85 MiB (glibc 78 / 62) |
//! | musl + mimalloc, round 2 | 256 MiB | 1.38 | 0.75 | (Ceph's memstore full) | 107 MiB (glibc 75) |
//! | musl's own malloc | 64 MiB | 0.99 | 1.12 | 1.02 | 61 / 65 MiB (glibc 71 / 105) |
//! | musl + mimalloc, THP off, purge 10 ms (`tune_allocator`), run 1 | 64 MiB | 1.02 | 1.04 | 0.98 | 82 / 97 MiB (glibc 76 / 115) |
//! | the same, run 1 | 256 MiB | 0.97 | 1.06 | 0.89 | 86 / 72 MiB (glibc 79 / 66) |
//! | the same, run 2 | 256 MiB | 1.00 | 1.05 | 0.78 | 83 / 99 MiB (glibc 78 / 123) |
//! | the same, run 2 | 64 MiB | 1.02 | 1.04 | 1.07 | 82 / 74 MiB (glibc 71 / 63) |
//! | the same, run 3, static measured first | 256 MiB | 1.00 | - | 1.18 | 83 / 94 MiB (glibc 77 / 122) |
//!
//! The build measured second imports slower whichever it is (run 3 swapped
//! them: static 0.79x the raw PUT first, glibc 0.67x second; glibc had been
//! 0.80x first in run 2). Compare builds in the same position.
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
    let rounds: usize = std::env::var("IMSFLOW_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
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
        for _ in 0..rounds {
            rt.block_on(bench(mib, cache.path()));
        }
    }
}

/// CPU seconds, user + system.
fn cpu(who: i32) -> f64 {
    // SAFETY: getrusage only fills the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// CPU seconds of the Ceph daemons (RGW and OSD: they share the cores).
fn ceph_cpu() -> f64 {
    let Ok(conf) = std::env::var("IMSFLOW_TEST_CEPH_CONF") else {
        return 0.0;
    };
    let Some(run) = std::path::Path::new(&conf).parent().map(|p| p.join("run")) else {
        return 0.0;
    };
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    std::fs::read_dir(run)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".pid") && (n.starts_with("client.rgw") || n.starts_with("osd"))
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok())
        .map(|stat| {
            // utime and stime: fields 14 and 15, the 12th and 13th after the name.
            let after = stat.rsplit_once(')').map_or("", |(_, a)| a).to_string();
            let f: Vec<f64> = after
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0.0))
                .collect();
            (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / hz
        })
        .sum()
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

    // Baselines: the same objects, 8 concurrent GETs, bytes dropped; then
    // the same with the sha256 of each object computed as it arrives (in
    // the task that reads it, in parallel): the floor of any export that
    // checksums what it archives, before it writes a byte.
    // And then each object also written to a file where the archive goes:
    // the floor of any export (it hashes and writes every byte).
    let out = match std::env::var_os("IMSFLOW_BENCH_OUT") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    let (raw, total, raw_cpu, raw_ceph) = raw_get(&s3, &urls, false, None).await;
    let (raw_sha, _, sha_cpu, sha_ceph) = raw_get(&s3, &urls, true, None).await;
    let floor_dir = tempfile::tempdir_in(out.path()).unwrap();
    let (floor, _, floor_cpu, floor_ceph) = raw_get(&s3, &urls, true, Some(floor_dir.path())).await;
    drop(floor_dir);

    let run = |bin: &std::ffi::OsStr, dir: &std::path::Path| {
        Command::new(bin)
            .args(["-q", "--json", "export", dir.to_str().unwrap()])
            .env("IMSFLOW_CONFIG", sys.data.path().join("imsflow.toml"))
            .env("IMSFLOW_CACHE_DIR", cache)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let gib_s =
        |bytes: u64, d: std::time::Duration| bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64;
    let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
    let mut cpu_lines = vec![
        format!(
            "{:>6} MiB raw GET: {:.2} CPU s/GiB client, {:.2} Ceph",
            rootfs_mib,
            raw_cpu / gib(total),
            raw_ceph / gib(total)
        ),
        format!(
            "{:>6} MiB raw GET + sha256: {:.2} GiB/s ({:.2}x the raw GET); {:.2} CPU s/GiB client, {:.2} Ceph",
            rootfs_mib,
            gib_s(total, raw_sha),
            raw.as_secs_f64() / raw_sha.as_secs_f64(),
            sha_cpu / gib(total),
            sha_ceph / gib(total)
        ),
        format!(
            "{:>6} MiB raw GET + sha256 + write: {:.2} GiB/s ({:.2}x the raw GET); {:.2} CPU s/GiB client, {:.2} Ceph",
            rootfs_mib,
            gib_s(total, floor),
            raw.as_secs_f64() / floor.as_secs_f64(),
            floor_cpu / gib(total),
            floor_ceph / gib(total)
        ),
    ];
    let mut disk = None;
    let mut last_archive = None;
    for (label, bin) in measured_bins() {
        // Warm the compile cache so the measured run writes only the archive.
        let warm = tempfile::tempdir_in(out.path()).unwrap();
        assert!(run(&bin, warm.path()).status.success());
        drop(warm);
        let dir = tempfile::tempdir_in(out.path()).unwrap();
        let before = children_blocks_written();
        let (cpu0, ceph0) = (cpu(libc::RUSAGE_CHILDREN), ceph_cpu());
        let t = Instant::now();
        let result = run(&bin, dir.path());
        let took = t.elapsed();
        let (used, ceph_used) = (cpu(libc::RUSAGE_CHILDREN) - cpu0, ceph_cpu() - ceph0);
        let after = children_blocks_written();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&result.stdout).unwrap();
        let peak_kib = report["peak_rss_kib"].as_u64().unwrap_or(0);
        let archive = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let archive_bytes = std::fs::metadata(&archive).unwrap().len();
        let written = (after - before) * 512;
        let disk = *disk.get_or_insert_with(|| disk_write_speed(out.path(), archive_bytes));
        let export = gib_s(archive_bytes, took);
        println!(
            "{:>6} MiB {:>6.0} MiB {:>7.2} GiB/s {:>7.2} GiB/s {:>7.2} GiB/s {:>9.2} {:>10.2} {:>6.1} MiB {:>13.2}  {label}",
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
        cpu_lines.push(format!(
            "{:>6} MiB {label}: {:.2} CPU s/GiB imsflow, {:.2} Ceph; {:.2}x the raw GET + sha256, {:.2}x the raw GET + sha256 + write",
            rootfs_mib,
            used / gib(archive_bytes),
            ceph_used / gib(archive_bytes),
            export / gib_s(total, raw_sha),
            export / gib_s(total, floor)
        ));
        last_archive = Some((dir, archive));
    }
    for line in cpu_lines {
        println!("{line}");
    }
    if let Some((_keep, archive)) = last_archive {
        import_phase(&sys, &s3, &archive, &urls, cache, rootfs_mib).await;
    }
}

/// The builds measured, labelled: IMSFLOW_BENCH_BASE_BIN (another build,
/// say main's or the glibc one), first, for a before/after ratio in the same
/// run; then IMSFLOW_BENCH_BIN, or this build's binary.
fn measured_bins() -> Vec<(&'static str, std::ffi::OsString)> {
    let ours = std::env::var_os("IMSFLOW_BENCH_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_imsflow").into());
    let mut bins = vec![("export", ours)];
    if let Some(base) = std::env::var_os("IMSFLOW_BENCH_BASE_BIN") {
        bins.insert(0, ("base", base));
    }
    bins
}

/// The restore direction on the same data set: every artifact is removed
/// from S3, then `imsflow import overwrite --yes` puts the records and the
/// artifacts back from the archive (end to end: preflight integrity check,
/// plugins, backup, deletes, uploads, data files, restart, verification),
/// against a raw concurrent aws-sdk PUT of as many bytes, from memory, in
/// the same run.
async fn import_phase(
    sys: &System,
    s3: &csm_sim::s3::S3,
    archive: &std::path::Path,
    urls: &[String],
    cache: &std::path::Path,
    rootfs_mib: usize,
) {
    let mut sizes = Vec::new();
    for u in urls {
        let (b, k) = csm_sim::s3::parse_url(u).unwrap();
        if b != "boot-images" {
            continue;
        }
        let head = s3
            .client()
            .head_object()
            .bucket(b)
            .key(k)
            .send()
            .await
            .unwrap();
        sizes.push(head.content_length().unwrap_or(0) as usize);
    }
    let total: u64 = sizes.iter().map(|&n| n as u64).sum();
    // Raw PUT: 8 at a time, one shared buffer (content does not matter).
    let buffer = bytes::Bytes::from(vec![7u8; sizes.iter().copied().max().unwrap_or(0)]);
    let t = Instant::now();
    for (n, chunk) in sizes.chunks(8).enumerate() {
        let puts = chunk.iter().enumerate().map(|(i, &len)| {
            let client = s3.client().clone();
            let body = buffer.slice(..len);
            tokio::spawn(async move {
                client
                    .put_object()
                    .bucket("boot-images")
                    .key(format!("bench-raw/{n}-{i}"))
                    .body(body.into())
                    .send()
                    .await
                    .unwrap();
                len as u64
            })
        });
        futures_join(puts.collect()).await;
    }
    let raw = t.elapsed();
    let gib_s = |d: std::time::Duration| total as f64 / d.as_secs_f64() / (1u64 << 30) as f64;
    for (label, bin) in measured_bins() {
        // The system loses its artifacts (and the raw PUTs go too).
        let listed = s3.list("boot-images", "").await.unwrap();
        for (key, _, _) in listed {
            s3.client()
                .delete_object()
                .bucket("boot-images")
                .key(key)
                .send()
                .await
                .unwrap();
        }
        let backup = tempfile::tempdir().unwrap();
        let before = children_blocks_written();
        let t = Instant::now();
        let out = Command::new(&bin)
            .args(["--json", "import", "overwrite", "--yes", "-f"])
            .arg(archive)
            .arg("-b")
            .arg(backup.path())
            .env("IMSFLOW_CONFIG", sys.data.path().join("imsflow.toml"))
            .env("IMSFLOW_CACHE_DIR", cache)
            .env("IMSFLOW_STATE_DIR", backup.path().join("state"))
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        let took = t.elapsed();
        let written = (children_blocks_written() - before) * 512;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let peak = text
            .split("\"peak_rss_kib\":")
            .nth(1)
            .and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        println!(
            "{:>6} MiB import {label}: {:.0} MiB of artifacts; raw PUT {:.2} GiB/s; imsflow import overwrite {:.2} GiB/s ({:.2}x the raw PUT, end to end); peak RSS {:.1} MiB; disk written {:.1} MiB (the backup: records only)",
            rootfs_mib,
            total as f64 / 1048576.0,
            gib_s(raw),
            gib_s(took),
            gib_s(took) / gib_s(raw),
            peak as f64 / 1024.0,
            written as f64 / 1048576.0
        );
    }
}

/// 8 concurrent GETs of `urls`, bytes dropped (after their sha256 with
/// `hash`, and written to a file in `write_to`, if given): the time, the
/// bytes, and the CPU seconds of this process and of Ceph.
async fn raw_get(
    s3: &csm_sim::s3::S3,
    urls: &[String],
    hash: bool,
    write_to: Option<&std::path::Path>,
) -> (std::time::Duration, u64, f64, f64) {
    let (cpu0, ceph0) = (cpu(libc::RUSAGE_SELF), ceph_cpu());
    let t = Instant::now();
    let mut total = 0u64;
    for (n, chunk) in urls.chunks(8).enumerate() {
        let gets = chunk.iter().enumerate().map(|(i, u)| {
            let (b, k) = csm_sim::s3::parse_url(u).unwrap();
            let client = s3.client().clone();
            let (b, k) = (b.to_string(), k.to_string());
            // Written as the export writes: plain write(2)s from the task.
            let mut file =
                write_to.map(|dir| std::fs::File::create(dir.join(format!("{n}-{i}"))).unwrap());
            tokio::spawn(async move {
                let mut body = client
                    .get_object()
                    .bucket(b)
                    .key(k)
                    .send()
                    .await
                    .unwrap()
                    .body;
                let mut sha = <sha2::Sha256 as sha2::Digest>::new();
                let mut n = 0u64;
                while let Some(c) = body.try_next().await.unwrap() {
                    if hash {
                        sha2::Digest::update(&mut sha, &c);
                    }
                    if let Some(f) = &mut file {
                        std::io::Write::write_all(f, &c).unwrap();
                    }
                    n += c.len() as u64;
                }
                std::hint::black_box(sha2::Digest::finalize(sha));
                n
            })
        });
        for g in futures_join(gets.collect()).await {
            total += g;
        }
    }
    let took = t.elapsed();
    (
        took,
        total,
        cpu(libc::RUSAGE_SELF) - cpu0,
        ceph_cpu() - ceph0,
    )
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
