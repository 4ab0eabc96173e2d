//! The streaming path from S3 into an archive, on real Ceph: ranged GETs
//! reassemble objects exactly, and an object that changed since the plan is
//! refused (stale plan) with no archive left behind.
use csm_sim::testing::{System, small_spec};
use imsflow::archive::{ArchiveWriter, Format};
use imsflow::s3::{S3Settings, S3Store};
use imsflow::transfer::{ObjectJob, TransferConfig, stream_into};
use std::sync::Arc;

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
    let jobs = jobs(&sys);
    assert!(
        jobs.iter().any(|j| j.size > 5 << 20),
        "a multipart object is among them"
    );
    let out = tempfile::tempdir().unwrap();
    let writer = ArchiveWriter::create(out.path(), "ranged", Format::Tar).unwrap();
    // Tiny ranges: every object over 100 KiB is fetched as 64 KiB ranges, 3 at a time.
    let config = TransferConfig {
        concurrency: 3,
        range_threshold: 100 << 10,
        range_size: 64 << 10,
        ..TransferConfig::default()
    };
    let (writer, archived) = stream_into(
        store(&sys),
        jobs.clone(),
        writer,
        indicatif::ProgressBar::hidden(),
        &config,
    )
    .await
    .unwrap();
    let path = writer.finish().unwrap();
    for (job, done) in jobs.iter().zip(&archived) {
        let url = format!("s3://{}/{}", job.bucket, job.key);
        assert_eq!(done.sha256, sys.expected.objects[&url].sha256, "{url}");
    }
    let report = {
        let reader = imsflow::archive::ArchiveReader::open(&path).unwrap();
        reader.members().iter().map(|m| m.size).sum::<u64>()
    };
    assert_eq!(report, jobs.iter().map(|j| j.size).sum::<u64>());
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
        indicatif::ProgressBar::hidden(),
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
