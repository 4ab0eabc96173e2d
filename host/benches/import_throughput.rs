//! Import benchmark on a real Ceph RGW (needs IMSFLOW_TEST_S3_ENDPOINT and
//! IMSFLOW_TEST_CEPH_CONF, as the tests do): about 1 GiB of artifacts of
//! mixed sizes (256 MiB and 64 MiB images, multipart and single-PUT, and many
//! small files) in a tar archive, uploaded to S3 straight from the tar's byte
//! ranges through `S3Store::upload_many` (the functions the upload executor
//! uses: single PUT or multipart with the recorded part size, sha256 checked
//! while streaming), against, in the same run and with the same objects,
//! part sizes and concurrency, raw aws-sdk PUTs of the same bytes from memory:
//! - `raw signed`: `ByteStream::from(Bytes)`, as a plain client sends it (the
//!   SDK hashes an in-memory body to sign it);
//! - `raw stream`: the same bytes as a streaming body (unsigned payload, as
//!   imsflow's file bodies are): the wire's speed, the baseline of the ratio.
//!
//! Each side runs in a child process (this binary again), so that its peak
//! RSS (VmHWM), CPU time (user + system, getrusage) and bytes written to
//! storage (/proc/self/io `write_bytes`; HPE's importer writes the whole tar
//! again when it extracts it) are its own. RGW's own CPU is shown too: RGW
//! shares the machine's cores with the client.
//!
//! Run: `IMSFLOW_BENCH_OUT=/dev/shm cargo bench --bench import_throughput`
//! (the tar on tmpfs: the disk out of the picture). IMSFLOW_BENCH_ROUNDS
//! (default 2) repeats the three uploads, alternating their order.
//!
//! ## Measured (branch `perf`: 2 vCPU VM shared with other builds, load 5-6,
//! Ceph 16 memstore RGW + OSD on the same 2 cores, tar on tmpfs, 1127 MiB
//! in 207 objects; 3 runs)
//!
//! | side       | vs raw stream | client CPU s/GiB | RGW CPU s/GiB | peak RSS  | disk written |
//! |------------|---------------|------------------|---------------|-----------|--------------|
//! | imsflow    | 0.75-0.92     | 1.41-1.77        | 3.3-4.2       | 45-53 MiB | 0 B          |
//! | raw signed | 0.61-0.76     | 1.17-1.33        | 4.3-5.3       | (1.1 GiB of data in memory) | 0 B |
//! | raw stream | 1             | 0.31-0.38        | 3.5-4.5       | (idem)    | 0 B          |
//!
//! RGW's PUT path (3.3-5 CPU s/GiB: it computes MD5s and copies into the
//! memstore OSD) fills the machine; the client's CPU is taken from it. Most
//! of imsflow's extra CPU is the sha256 it must check (SHA-NI, 0.9 s/GiB on
//! this CPU; the raw signed client pays the same to sign its payload) and
//! reading the bytes from the page cache (twice for a multipart member:
//! its parts, and the ordered sha256 pass that runs beside them).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use imsflow::s3::{S3Settings, S3Store, UploadJob, UploadLimits};
use serde::{Deserialize, Serialize};

const BUCKET: &str = "import-bench";

/// One artifact in the tar.
#[derive(Serialize, Deserialize, Clone)]
struct Member {
    name: String,
    offset: u64,
    len: u64,
    part_size: Option<u64>,
    sha256: String,
}

#[derive(Serialize, Deserialize)]
struct Setup {
    endpoint: String,
    access_key: String,
    secret_key: String,
    tar: PathBuf,
    members: Vec<Member>,
}

/// What a child measured.
#[derive(Serialize, Deserialize, Debug)]
struct Measured {
    secs: f64,
    cpu_secs: f64,
    peak_rss_kib: u64,
    write_bytes: u64,
    etags: Vec<String>,
}

fn main() {
    if let Ok(role) = std::env::var("IMSFLOW_BENCH_ROLE") {
        return child(&role);
    }
    let ceph = csm_sim::testing::Ceph::from_env();
    let (tenant, s3) = ceph.tenant();
    let rounds: usize = std::env::var("IMSFLOW_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let out = match std::env::var_os("IMSFLOW_BENCH_OUT") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let tar = out.path().join("import.tar");
    let members = make_tar(&tar);
    let total: u64 = members.iter().map(|m| m.len).sum();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = csm_sim::s3::S3::new(&s3);
    rt.block_on(client.create_bucket(BUCKET)).unwrap();
    let setup = out.path().join("setup.json");
    std::fs::write(
        &setup,
        serde_json::to_vec(&Setup {
            endpoint: s3.endpoint.clone(),
            access_key: s3.access_key.clone(),
            secret_key: s3.secret_key.clone(),
            tar: tar.clone(),
            members: members.clone(),
        })
        .unwrap(),
    )
    .unwrap();
    println!(
        "{} objects, {:.0} MiB, tar at {}; {} rounds",
        members.len(),
        total as f64 / 1048576.0,
        tar.display(),
        rounds
    );
    println!(
        "{:>11} {:>11} {:>9} {:>11} {:>12} {:>10} {:>11}",
        "side", "GiB/s", "vs stream", "CPU s/GiB", "RGW s/GiB", "peak RSS", "disk write"
    );
    let rgw = rgw_pid(&ceph.conf);
    let gib = total as f64 / (1u64 << 30) as f64;
    let mut etags: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for round in 0..rounds {
        let mut order = vec!["raw stream", "imsflow", "raw signed"];
        if round % 2 == 1 {
            order.reverse();
        }
        let mut results = BTreeMap::new();
        for side in order {
            let rgw_before = rgw.map(cpu_of_pid);
            let m = run_child(side, &setup);
            let rgw_secs = rgw.map(|p| cpu_of_pid(p) - rgw_before.unwrap_or(0.0));
            results.insert(side, (m, rgw_secs));
        }
        let stream = total as f64 / results["raw stream"].0.secs;
        for (side, (m, rgw_secs)) in &results {
            let speed = total as f64 / m.secs;
            println!(
                "{:>11} {:>11.2} {:>9.2} {:>11.2} {:>12} {:>6.1} MiB {:>9} B",
                side,
                speed / (1u64 << 30) as f64,
                speed / stream,
                m.cpu_secs / gib,
                rgw_secs.map_or("?".into(), |s| format!("{:.2}", s / gib)),
                m.peak_rss_kib as f64 / 1024.0,
                m.write_bytes
            );
        }
        for (side, (m, _)) in results {
            etags.insert(side, m.etags);
        }
    }
    // The same ETags, multipart ones included: part sizes were honoured.
    assert_eq!(etags["imsflow"], etags["raw stream"]);
    assert_eq!(etags["imsflow"], etags["raw signed"]);
    drop(rt);
    ceph.remove_tenant(&tenant);
}

/// The artifacts: 3 x 256 MiB multipart (8 MiB parts), 4 x 64 MiB (two
/// multipart in 5 MiB parts, two single PUTs), 200 small ones (16 KiB to
/// 1 MiB, single PUTs): about 1.06 GiB.
fn make_tar(path: &Path) -> Vec<Member> {
    use sha2::{Digest, Sha256};
    let mut specs: Vec<(String, usize, Option<u64>)> = Vec::new();
    for i in 0..3 {
        specs.push((format!("images/big{i}/rootfs"), 256 << 20, Some(8 << 20)));
    }
    for i in 0..4 {
        let part = (i % 2 == 0).then_some(5 << 20);
        specs.push((format!("images/mid{i}/rootfs"), 64 << 20, part));
    }
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..200 {
        let size = rng.usize(16 << 10..1 << 20);
        specs.push((format!("small/{i}/initrd"), size, None));
    }
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let mut members = Vec::new();
    for (name, size, part_size) in specs {
        let mut data = vec![0u8; size];
        let mut x = rng.u64(..) | 1;
        for word in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes()[..word.len()]);
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(size as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, &name, data.as_slice())
            .unwrap();
        members.push(Member {
            name,
            offset: 0,
            len: size as u64,
            part_size,
            sha256: hex::encode(Sha256::digest(&data)),
        });
    }
    tar.into_inner()
        .unwrap()
        .into_inner()
        .unwrap()
        .sync_all()
        .unwrap();
    // Offsets as the input archive's reader finds them.
    let reader = imsflow::archive::ArchiveReader::open(path).unwrap();
    for m in &mut members {
        let (_, offset, len) = reader.locate(&m.name).unwrap();
        assert_eq!(len, m.len);
        m.offset = offset;
    }
    members
}

fn run_child(side: &str, setup: &Path) -> Measured {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("IMSFLOW_BENCH_ROLE", side)
        .env("IMSFLOW_BENCH_SETUP", setup)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{side}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn child(role: &str) {
    let setup: Setup = serde_json::from_slice(
        &std::fs::read(std::env::var("IMSFLOW_BENCH_SETUP").unwrap()).unwrap(),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = role.replace(' ', "-");
    let limits = UploadLimits::default();
    // The raw sides hold the bytes in memory before the clock starts.
    let data: Vec<Bytes> = if role.starts_with("raw") {
        let tar = std::fs::read(&setup.tar).unwrap();
        let tar = Bytes::from(tar);
        setup
            .members
            .iter()
            .map(|m| tar.slice(m.offset as usize..(m.offset + m.len) as usize))
            .collect()
    } else {
        Vec::new()
    };
    let cpu0 = cpu_self();
    let io0 = write_bytes();
    let t = Instant::now();
    let etags = rt.block_on(async {
        match role {
            "imsflow" => {
                let s3 = S3Store::new(&S3Settings {
                    endpoint: setup.endpoint.clone(),
                    access_key: setup.access_key.clone(),
                    secret_key: setup.secret_key.clone(),
                    session_token: None,
                    ca: None,
                });
                let jobs = setup
                    .members
                    .iter()
                    .map(|m| {
                        UploadJob::new(
                            (BUCKET, &format!("{prefix}/{}", m.name)),
                            (&setup.tar, m.offset, m.len),
                            m.part_size,
                            Some("application/octet-stream"),
                            &BTreeMap::from([("md5sum".to_string(), "bench".to_string())]),
                            Some(&m.sha256),
                        )
                    })
                    .collect();
                s3.upload_many(jobs, limits)
                    .await
                    .into_iter()
                    .map(|r| r.unwrap())
                    .collect::<Vec<_>>()
            }
            _ => raw(&setup, &data, role == "raw signed", &prefix, limits).await,
        }
    });
    let secs = t.elapsed().as_secs_f64();
    let measured = Measured {
        secs,
        cpu_secs: cpu_self() - cpu0,
        peak_rss_kib: peak_rss_kib(),
        write_bytes: write_bytes() - io0,
        etags,
    };
    // Not timed: the objects go, so that the RGW's memstore does not fill.
    rt.block_on(async {
        let client = raw_client(&setup);
        futures::stream::iter(&setup.members)
            .for_each_concurrent(16, |m| {
                let client = client.clone();
                let key = format!("{prefix}/{}", m.name);
                async move {
                    client
                        .delete_object()
                        .bucket(BUCKET)
                        .key(key)
                        .send()
                        .await
                        .unwrap();
                }
            })
            .await
    });
    println!("{}", serde_json::to_string(&measured).unwrap());
}

fn raw_client(setup: &Setup) -> aws_sdk_s3::Client {
    let s3 = csm_sim::s3::S3::new(&csm_sim::s3::S3Config {
        endpoint: setup.endpoint.clone(),
        access_key: setup.access_key.clone(),
        secret_key: setup.secret_key.clone(),
    });
    s3.client().clone()
}

/// The same objects, parts and concurrency as `upload_many`, from memory.
async fn raw(
    setup: &Setup,
    data: &[Bytes],
    signed: bool,
    prefix: &str,
    limits: UploadLimits,
) -> Vec<String> {
    use aws_sdk_s3::primitives::{ByteStream, SdkBody};
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let client = raw_client(setup);
    let requests = limits.requests();
    let body = move |b: Bytes| {
        if signed {
            ByteStream::from(b)
        } else {
            // A streaming body: sent as UNSIGNED-PAYLOAD, as a file body is.
            ByteStream::new(SdkBody::retryable(move || {
                let frames = futures::stream::iter(
                    b.chunks(1 << 20)
                        .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(b.slice_ref(c))))
                        .collect::<Vec<_>>(),
                );
                SdkBody::from_body_1_x(http_body_util::StreamBody::new(frames))
            }))
        }
    };
    futures::stream::iter(setup.members.iter().zip(data))
        .map(|(m, bytes)| {
            let client = client.clone();
            let requests = requests.clone();
            let key = format!("{prefix}/{}", m.name);
            let bytes = bytes.clone();
            let part_size = m.part_size;
            tokio::spawn(async move {
                let Some(part) = part_size else {
                    let _permit = requests.acquire().await.unwrap();
                    let out = client
                        .put_object()
                        .bucket(BUCKET)
                        .key(&key)
                        .content_length(bytes.len() as i64)
                        .content_type("application/octet-stream")
                        .metadata("md5sum", "bench")
                        .body(body(bytes))
                        .send()
                        .await
                        .unwrap();
                    return out.e_tag().unwrap().trim_matches('"').to_string();
                };
                let id = client
                    .create_multipart_upload()
                    .bucket(BUCKET)
                    .key(&key)
                    .content_type("application/octet-stream")
                    .metadata("md5sum", "bench")
                    .send()
                    .await
                    .unwrap()
                    .upload_id()
                    .unwrap()
                    .to_string();
                let chunks: Vec<Bytes> = bytes
                    .chunks(part as usize)
                    .map(|c| bytes.slice_ref(c))
                    .collect();
                let parts: Vec<CompletedPart> =
                    futures::stream::iter(chunks.into_iter().enumerate())
                        .map(|(n, chunk)| {
                            let (client, requests, key, id) =
                                (client.clone(), requests.clone(), key.clone(), id.clone());
                            async move {
                                let _permit = requests.acquire().await.unwrap();
                                let out = client
                                    .upload_part()
                                    .bucket(BUCKET)
                                    .key(key)
                                    .upload_id(id)
                                    .part_number(n as i32 + 1)
                                    .content_length(chunk.len() as i64)
                                    .body(body(chunk))
                                    .send()
                                    .await
                                    .unwrap();
                                CompletedPart::builder()
                                    .part_number(n as i32 + 1)
                                    .e_tag(out.e_tag().unwrap())
                                    .build()
                            }
                        })
                        .buffered(8)
                        .collect()
                        .await;
                let out = client
                    .complete_multipart_upload()
                    .bucket(BUCKET)
                    .key(&key)
                    .upload_id(id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
                let etag = match out.e_tag().filter(|e| !e.is_empty()) {
                    Some(etag) => etag.to_string(),
                    // RGW 16 completes with an empty ETag: ask.
                    None => client
                        .head_object()
                        .bucket(BUCKET)
                        .key(&key)
                        .send()
                        .await
                        .unwrap()
                        .e_tag()
                        .unwrap()
                        .to_string(),
                };
                etag.trim_matches('"').to_string()
            })
        })
        .buffered(limits.objects)
        .map(|r| r.unwrap())
        .collect()
        .await
}

/// User + system CPU seconds of this process.
fn cpu_self() -> f64 {
    // SAFETY: getrusage only fills the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes this process caused to be written to storage.
fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The RGW's pid, from its pid file beside the cluster's configuration.
fn rgw_pid(conf: &str) -> Option<u32> {
    let run = Path::new(conf).parent()?.join("run");
    std::fs::read_dir(run)
        .ok()?
        .flatten()
        .find(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("client.rgw") && name.ends_with(".pid")
        })
        .and_then(|e| std::fs::read_to_string(e.path()).ok())
        .and_then(|p| p.trim().parse().ok())
}

/// User + system CPU seconds of a process, from /proc/PID/stat.
fn cpu_of_pid(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}
