//! The streaming paths between S3 and archives, on real Ceph: ranged GETs
//! reassemble objects exactly, and an object that changed since the plan is
//! refused (stale plan) with no archive left behind; uploads stream from a
//! tar's byte ranges, and a member that fails its sha256 leaves nothing.
use csm_sim::testing::{System, small_spec};
use imsflow::archive::{ArchiveWriter, Format};
use imsflow::s3::{S3Settings, S3Store};
use imsflow::transfer::{ObjectJob, TransferConfig, stream_into};
use std::sync::Arc;

fn imsflow_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn store(sys: &System) -> Arc<S3Store> {
    Arc::new(S3Store::new(&S3Settings {
        endpoint: sys.s3.endpoint.clone(),
        access_key: sys.s3.access_key.clone(),
        secret_key: sys.s3.secret_key.clone(),
        session_token: None,
        ca: None,
    }))
}

fn jobs(sys: &System) -> Vec<ObjectJob> {
    sys.expected
        .objects
        .iter()
        .enumerate()
        .map(|(i, (url, facts))| {
            let (bucket, key) = csm_sim::s3::parse_url(url).unwrap();
            ObjectJob {
                bucket: bucket.into(),
                key: key.into(),
                path: format!("m/{i}"),
                size: facts.size,
                etag: Some(facts.etag.clone()),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_gets_reassemble_objects_exactly() {
    let sys = System::start(&small_spec()).await;
    let mut jobs = jobs(&sys);
    assert!(
        jobs.iter().any(|j| j.size > 5 << 20),
        "a multipart object is among them"
    );
    // The seeded multipart objects have one possible part size (5 MiB) and
    // are not hashed for it. This one's `-2` fits 8, 5, 6 and 7 MiB parts:
    // its MD5s decide, and it was uploaded in 5 MiB parts.
    let body: Vec<u8> = (0..9_438_183u32).map(|i| (i % 253) as u8).collect();
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    s3.put_multipart(
        "boot-images",
        "ambiguous",
        &body,
        5 << 20,
        &Default::default(),
    )
    .await
    .unwrap();
    let etag = s3
        .head("boot-images", "ambiguous")
        .await
        .unwrap()
        .unwrap()
        .etag;
    assert!(etag.ends_with("-2"), "{etag}");
    jobs.push(ObjectJob {
        bucket: "boot-images".into(),
        key: "ambiguous".into(),
        path: "m/ambiguous".into(),
        size: body.len() as u64,
        etag: Some(etag),
    });
    let sha256 = |url: &str| match url {
        "s3://boot-images/ambiguous" => imsflow_sha256(&body),
        _ => sys.expected.objects[url].sha256.clone(),
    };
    // Tiny ranges: every object over 100 KiB is fetched as 64 KiB ranges, 3
    // at a time (the parts of a multipart ETag straddle them: their MD5s are
    // computed by the writer). Then ranges of whole 8 MiB parts, whose MD5s
    // the fetchers compute in parallel (the other sizes' by the writer).
    for (name, config) in [
        (
            "ranged",
            TransferConfig {
                concurrency: 3,
                range_threshold: 100 << 10,
                range_size: 64 << 10,
                ..TransferConfig::default()
            },
        ),
        (
            "parts",
            TransferConfig {
                concurrency: 3,
                range_threshold: 1 << 20,
                range_size: 7 << 20,
                ..TransferConfig::default()
            },
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        let writer = ArchiveWriter::create(out.path(), name, Format::Tar).unwrap();
        let (writer, archived) = stream_into(
            store(&sys),
            jobs.clone(),
            writer,
            imsflow::observe::silent(),
            &config,
        )
        .await
        .unwrap();
        let path = writer.finish().unwrap();
        for (job, done) in jobs.iter().zip(&archived) {
            let url = format!("s3://{}/{}", job.bucket, job.key);
            assert_eq!(done.sha256, sha256(&url), "{url}");
            if job.etag.as_ref().is_some_and(|e| e.contains('-')) {
                assert_eq!(
                    done.part_size,
                    Some(csm_sim::seed::MULTIPART_PART as u64),
                    "{name}: {url}: the part size (proven for `ambiguous`, \
                     where 8 MiB, tried first, also gives two parts)"
                );
            }
        }
        let reader = imsflow::archive::ArchiveReader::open(&path).unwrap();
        let total = reader.members().iter().map(|m| m.size).sum::<u64>();
        assert_eq!(total, jobs.iter().map(|j| j.size).sum::<u64>());
        for job in &jobs {
            let url = format!("s3://{}/{}", job.bucket, job.key);
            assert_eq!(
                reader.sha256(&job.path).unwrap(),
                sha256(&url),
                "{name}: the archived bytes of {url}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_changed_since_the_plan_is_refused() {
    let sys = System::start(&small_spec()).await;
    let mut jobs = jobs(&sys);
    let victim = jobs.iter().position(|j| j.key.ends_with("kernel")).unwrap();
    // Rewrite the object after "planning": same size, new bytes, new ETag.
    let s3 = csm_sim::s3::S3::new(&sys.s3);
    let size = jobs[victim].size as usize;
    s3.put(&jobs[victim].bucket, &jobs[victim].key, vec![9u8; size])
        .await
        .unwrap();
    jobs.truncate(victim + 1);
    let out = tempfile::tempdir().unwrap();
    let writer = ArchiveWriter::create(out.path(), "stale", Format::Tar).unwrap();
    let err = match stream_into(
        store(&sys),
        jobs,
        writer,
        imsflow::observe::silent(),
        &TransferConfig::default(),
    )
    .await
    {
        Ok(_) => panic!("a changed object must be refused"),
        Err(e) => e,
    };
    assert!(
        err.message.contains("changed since it was planned"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(out.path()).unwrap().count(),
        0,
        "the partial archive is removed"
    );
}

/// The upload direction: members of a tar streamed to S3 from their byte
/// ranges, several objects and parts at once, with the sha256 checked on
/// the way. A member whose bytes do not match leaves no object and no open
/// multipart upload, whether it went as one PUT or in parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_stream_from_tar_ranges_and_corrupt_members_leave_nothing() {
    use imsflow::s3::{UploadJob, UploadLimits};
    use md5::{Digest, Md5};
    use sha2::Sha256;
    use std::collections::BTreeMap;

    let ceph = csm_sim::testing::Ceph::from_env();
    let (tenant, cfg) = ceph.tenant();
    let sim_s3 = csm_sim::s3::S3::new(&cfg);
    sim_s3.create_bucket("restore").await.unwrap();
    let s3 = S3Store::new(&S3Settings {
        endpoint: cfg.endpoint.clone(),
        access_key: cfg.access_key.clone(),
        secret_key: cfg.secret_key.clone(),
        session_token: None,
        ca: None,
    });
    // name, size, part size, whether the recorded sha256 is wrong
    let members: [(&str, usize, Option<u64>, bool); 6] = [
        ("multi", (12 << 20) + 3, Some(5 << 20), false),
        ("single", (2 << 20) + 77, None, false),
        ("empty", 0, None, false),
        ("bad-multi", 11 << 20, Some(5 << 20), true),
        ("bad-single", 3 << 20, None, true),
        ("bad-small", 1000, None, true),
    ];
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("in.tar");
    let mut data = BTreeMap::new();
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        for (i, (name, size, _, _)) in members.iter().enumerate() {
            let bytes: Vec<u8> = (0..*size).map(|b| (b * 7 + i * 13) as u8).collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(*size as u64);
            header.set_mode(0o600);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, bytes.as_slice())
                .unwrap();
            data.insert(*name, bytes);
        }
        tar.finish().unwrap();
    }
    let reader = imsflow::archive::ArchiveReader::open(&tar_path).unwrap();
    let metadata = BTreeMap::from([("md5sum".to_string(), "abc".to_string())]);
    let jobs: Vec<UploadJob> = members
        .iter()
        .map(|(name, _, part_size, corrupt)| {
            let (file, offset, len) = reader.locate(name).unwrap();
            let mut sha = hex::encode(Sha256::digest(&data[name]));
            if *corrupt {
                sha = hex::encode(Sha256::digest(b"something else"));
            }
            UploadJob::new(
                ("restore", name),
                (&file, offset, len),
                *part_size,
                Some("application/x-test"),
                &metadata,
                Some(&sha),
            )
        })
        .collect();
    let results = s3
        .upload_many(
            jobs,
            UploadLimits {
                objects: 3,
                requests: 4,
            },
        )
        .await;
    for ((name, _, part_size, corrupt), result) in members.iter().zip(&results) {
        let bytes = &data[name];
        if *corrupt {
            let err = result.as_ref().expect_err(name).to_string();
            assert!(
                err.contains("sha256") && err.contains("nothing was stored"),
                "{name}: {err}"
            );
            assert!(
                sim_s3.head("restore", name).await.unwrap().is_none(),
                "{name}: no object became visible"
            );
            continue;
        }
        let etag = result.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = match part_size {
            None => hex::encode(Md5::digest(bytes)),
            Some(part) => {
                let chunks = bytes.chunks(*part as usize);
                let count = chunks.len();
                let mut of_parts = Md5::new();
                chunks.for_each(|c| of_parts.update(Md5::digest(c)));
                format!("{}-{count}", hex::encode(of_parts.finalize()))
            }
        };
        assert_eq!(
            *etag, want,
            "{name}: the ETag S3 computes from the bytes sent"
        );
        let head = s3.head("restore", name).await.unwrap().unwrap();
        assert_eq!(head.size, bytes.len() as u64, "{name}");
        assert_eq!(head.content_type.as_deref(), Some("application/x-test"));
        assert_eq!(
            head.metadata,
            vec![("md5sum".to_string(), "abc".to_string())]
        );
        assert_eq!(
            sim_s3.get("restore", name).await.unwrap(),
            *bytes,
            "{name}: the bytes of its range, exactly"
        );
    }
    let open = crate::support::open_uploads(&sim_s3, "restore").await;
    assert!(
        open.is_empty(),
        "the aborted multipart upload left nothing behind: {open:?}"
    );
    ceph.remove_tenant(&tenant);
}
