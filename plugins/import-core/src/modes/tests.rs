use super::*;
use crate::effect::{DeleteMode, Precondition, Upload};
use crate::restore::Status;
use crate::testdata::*;
use serde_json::Value;
use serde_json::json;

fn options(ignore_running_jobs: bool) -> Options {
    Options {
        ignore_running_jobs,
        created: "20250101000000.000000".into(),
    }
}

fn run(mode: Mode, ignore: bool) -> Result<Planned, Vec<String>> {
    let (archive, current, s3, options) = (archive(), current(), s3(), options(ignore));
    plan(
        mode,
        &Inputs {
            archive: &archive,
            current: &current,
            s3: &s3,
            options: &options,
        },
    )
}

/// One short line per effect, written out by hand in the tests.
fn lines(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Phase { name, .. } => format!("phase {name}"),
            Effect::ArchiveAddObject { bucket, key, .. } => {
                format!("backup s3://{bucket}/{key}")
            }
            Effect::ArchiveAddIndex { path, .. } => format!("backup {path}"),
            Effect::ImsDelete {
                ims_kind,
                id,
                delete,
                ..
            } => match delete {
                DeleteMode::Soft => format!("soft {} {id}", ims_kind.noun()),
                DeleteMode::Hard { cascade } => {
                    format!("hard {} {id} cascade={cascade}", ims_kind.noun())
                }
                DeleteMode::Purge => format!("purge {} {id}", ims_kind.noun()),
            },
            Effect::AssertImsEmpty {
                live,
                deleted,
                jobs,
            } => format!("assert live={live} deleted={deleted} jobs={jobs}"),
            Effect::S3UploadFromArchive(u) => {
                format!("upload s3://{}/{} {:?}", u.bucket, u.key, u.precondition)
            }
            Effect::ImsStoreWrite {
                ims_kind, summary, ..
            } => {
                format!(
                    "write {} +{:?} ~{:?} -{:?}",
                    ims_kind.noun(),
                    summary.added,
                    summary.replaced,
                    summary.removed
                )
            }
            Effect::ImsRestart => "restart".into(),
            Effect::VerifyEndState => "verify end state".into(),
        })
        .collect()
}

fn write_of(effects: &[Effect], kind: Kind) -> (Vec<Value>, Vec<Value>) {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::ImsStoreWrite {
                ims_kind,
                records_json,
                expect_json,
                ..
            } if *ims_kind == kind => Some((
                serde_json::from_str(records_json).unwrap(),
                serde_json::from_str(expect_json).unwrap(),
            )),
            _ => None,
        })
        .expect("a write of that kind")
}

const PURGED_B: [&str; 3] = [
    "backup s3://boot-images/deleted/img-b/deleted_manifest.json",
    "backup s3://boot-images/deleted/img-b/rootfs",
    "backup s3://boot-images/deleted/img-b/manifest.json",
];

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn add_adds_what_is_not_live_and_purges_deleted_collisions() {
    let planned = run(Mode::Add, false).expect("add does not care about running jobs");
    let mut want = v(&["phase preflight", "phase backup"]);
    want.extend(v(&PURGED_B));
    want.extend(v(&[
        "backup export.json",
        "phase delete",
        "purge image img-b",
        "phase assert",
        "phase s3-restore",
        "upload s3://boot-images/img-b/rootfs Absent",
        "upload s3://boot-images/img-b/manifest.json Absent",
        "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
        "upload s3://boot-images/img-a/kernel Absent",
        "phase store-write",
        "write image +[\"img-b\"] ~[] -[]",
        "write recipe +[\"rec-a\"] ~[] -[]",
        "restart",
        "phase verify",
        "verify end state",
    ]));
    assert_eq!(lines(&planned.effects), want);
    let r = &planned.review;
    let actions: Vec<(&str, Action)> = r
        .records
        .iter()
        .map(|a| (a.id.as_str(), a.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("img-a", Action::Skip),
            ("img-b", Action::Add),
            ("key-a", Action::Skip),
            ("rec-a", Action::Add)
        ]
    );
    assert_eq!(
        r.s3_summary.conflict,
        v(&["s3://boot-images/img-a/rootfs"]),
        "BOS's manifest lists the changed rootfs"
    );
    assert_eq!(
        r.s3_summary.present,
        v(&[
            "s3://boot-images/img-a/manifest.json",
            "s3://boot-images/k8s/kernel"
        ])
    );
    // The merged images, sorted by `created`: img-c (2023), img-b, img-a.
    let (records, expect) = write_of(&planned.effects, Kind::Image);
    assert_eq!(records, vec![img_c(), img_b(), img_a_current()]);
    assert_eq!(expect, vec![img_a_current(), img_c()]);
    assert_eq!(r.expected.deleted["images"], Vec::<String>::new());
    assert_eq!(r.expected.deleted["recipes"], v(&["rec-old"]));
    assert_eq!(r.expected.jobs, v(&["job-1", "job-2"]));
    assert_eq!(r.expected.live["images"], v(&["img-a", "img-b", "img-c"]));
    assert!(
        r.differences_from_hpe
            .iter()
            .any(|d| d.contains("purges deleted records"))
    );
    assert!(
        r.differences_from_hpe
            .iter()
            .any(|d| d.contains("--ignore-running-jobs"))
    );
}

#[test]
fn a_purge_expects_the_deleted_record_as_seen() {
    let planned = run(Mode::Add, false).unwrap();
    let purge = planned
        .effects
        .iter()
        .find(|e| matches!(e, Effect::ImsDelete { .. }))
        .unwrap();
    assert_eq!(
        purge,
        &Effect::ImsDelete {
            ims_kind: Kind::Image,
            id: "img-b".into(),
            name: "old-b".into(),
            delete: DeleteMode::Purge,
            expect_json: img_b_deleted().to_string(),
        }
    );
}

#[test]
fn update_replaces_by_id_and_lists_the_fields_that_change() {
    assert_eq!(
        run(Mode::Update, false).err().unwrap(),
        vec![
            "Aborted import due to incomplete jobs: Job job-2 is not complete (status = building_image). Wait until jobs are completed, or pass --ignore-running-jobs"
        ]
    );
    let planned = run(Mode::Update, true).unwrap();
    let mut want = v(&["phase preflight", "phase backup"]);
    want.extend(v(&PURGED_B));
    want.extend(v(&[
        "backup export.json",
        "phase delete",
        "purge image img-b",
        "phase assert",
        "phase s3-restore",
        "upload s3://boot-images/img-a/kernel Absent",
        "upload s3://boot-images/img-b/rootfs Absent",
        "upload s3://boot-images/img-b/manifest.json Absent",
        "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
        "phase store-write",
        "write image +[\"img-b\"] ~[\"img-a\"] -[]",
        "write recipe +[\"rec-a\"] ~[] -[]",
        "restart",
        "phase verify",
        "verify end state",
    ]));
    assert_eq!(
        lines(&planned.effects),
        want,
        "key-a is identical: its data file is not rewritten"
    );
    let r = &planned.review;
    let img_a = r.records.iter().find(|a| a.id == "img-a").unwrap();
    assert_eq!(img_a.action, Action::Replace);
    assert_eq!(
        img_a.diff,
        vec![FieldChange {
            field: "name".into(),
            change: Change::Changed,
            from: Some(json!("a-renamed")),
            to: Some(json!("a"))
        }]
    );
    assert_eq!(
        r.records.iter().find(|a| a.id == "key-a").unwrap().action,
        Action::Keep
    );
    let (records, _) = write_of(&planned.effects, Kind::Image);
    assert_eq!(records, vec![img_c(), img_b(), img_a_exported()]);
}

#[test]
fn overwrite_empties_ims_then_writes_the_export() {
    let planned = run(Mode::Overwrite, true).unwrap();
    let want = v(&[
        "phase preflight",
        "phase backup",
        // img-a's manifest comes back identical from the archive: not backed up.
        "backup s3://boot-images/deleted/img-b/deleted_manifest.json",
        "backup s3://boot-images/deleted/img-b/rootfs",
        "backup s3://boot-images/deleted/img-b/manifest.json",
        "backup s3://boot-images/img-a/rootfs",
        "backup s3://boot-images/img-c/manifest.json",
        "backup s3://boot-images/img-c/rootfs",
        "backup s3://ims/deleted/recipes/rec-old/recipe.tar.gz",
        "backup export.json",
        "phase delete",
        "purge image img-b",
        "hard image img-a cascade=true",
        "hard image img-c cascade=true",
        "hard public key key-a cascade=false",
        "hard public key key-c cascade=false",
        "purge recipe rec-old",
        "hard recipe rec-c cascade=false",
        "soft job job-1",
        "soft job job-2",
        "phase assert",
        "assert live=true deleted=true jobs=true",
        "phase s3-restore",
        // Deleted by img-a's cascade, so uploaded, the conflict included.
        "upload s3://boot-images/img-a/rootfs Absent",
        "upload s3://boot-images/img-a/kernel Absent",
        "upload s3://boot-images/img-a/manifest.json Absent",
        "upload s3://boot-images/img-b/rootfs Absent",
        "upload s3://boot-images/img-b/manifest.json Absent",
        "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
        "phase store-write",
        "write image +[\"img-b\"] ~[\"img-a\"] -[\"img-c\"]",
        "write public key +[] ~[\"key-a\"] -[\"key-c\"]",
        "write recipe +[\"rec-a\"] ~[] -[\"rec-c\"]",
        "restart",
        "phase verify",
        "verify end state",
    ]);
    assert_eq!(lines(&planned.effects), want);
    let r = &planned.review;
    assert_eq!(r.s3_summary.present, v(&["s3://boot-images/k8s/kernel"]));
    assert!(r.s3_summary.conflict.is_empty());
    let rootfs =
        r.s3.iter()
            .find(|t| t.url == "s3://boot-images/img-a/rootfs")
            .unwrap();
    assert_eq!(rootfs.removed_by.as_deref(), Some("cascade of image img-a"));
    let (records, expect) = write_of(&planned.effects, Kind::Image);
    assert_eq!(records, vec![img_b(), img_a_exported()]);
    assert_eq!(
        expect,
        vec![img_a_current(), img_c()],
        "the records as planned"
    );
    assert_eq!(r.expected.deleted.values().map(Vec::len).sum::<usize>(), 0);
    assert!(r.expected.jobs.is_empty());
    let backed: u64 = 90 + 85 + 80 + 12 * MIB + 60 + 70 + 95;
    assert_eq!(r.backup.bytes, backed);
    let upload = planned.effects.iter().find_map(|e| match e {
        Effect::S3UploadFromArchive(u) if u.key == "img-a/rootfs" => Some(u.clone()),
        _ => None,
    });
    assert_eq!(
        upload.unwrap(),
        Upload {
            path: "s3_artifacts/boot-images/img-a_rootfs".into(),
            bucket: "boot-images".into(),
            key: "img-a/rootfs".into(),
            size: 12 * MIB,
            sha256: None,
            content_type: Some("application/octet-stream".into()),
            metadata: [("md5sum".to_string(), "m".to_string())]
                .into_iter()
                .collect(),
            part_size: Some(5 * MIB),
            etag: Some(ROOTFS_ETAG.into()),
            precondition: Precondition::Absent,
        }
    );
}

#[test]
fn soft_overwrite_keeps_what_the_archive_lacks_as_deleted() {
    let planned = run(Mode::SoftOverwrite, true).unwrap();
    let mut want = v(&["phase preflight", "phase backup"]);
    want.extend(v(&PURGED_B));
    want.extend(v(&[
        "backup s3://boot-images/img-a/rootfs",
        "backup export.json",
        "phase delete",
        "purge image img-b",
        "hard image img-a cascade=true",
        "soft image img-c",
        "hard public key key-a cascade=false",
        "soft public key key-c",
        "soft recipe rec-c",
        "soft job job-1",
        "soft job job-2",
        "phase assert",
        "assert live=true deleted=false jobs=true",
        "phase s3-restore",
        "upload s3://boot-images/img-a/rootfs Absent",
        "upload s3://boot-images/img-a/kernel Absent",
        "upload s3://boot-images/img-a/manifest.json Absent",
        "upload s3://boot-images/img-b/rootfs Absent",
        "upload s3://boot-images/img-b/manifest.json Absent",
        "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
        "phase store-write",
        "write image +[\"img-b\"] ~[\"img-a\"] -[\"img-c\"]",
        "write public key +[] ~[\"key-a\"] -[\"key-c\"]",
        "write recipe +[\"rec-a\"] ~[] -[\"rec-c\"]",
        "restart",
        "phase verify",
        "verify end state",
    ]));
    assert_eq!(lines(&planned.effects), want);
    let r = &planned.review;
    assert_eq!(r.expected.deleted["images"], v(&["img-c"]));
    assert_eq!(r.expected.deleted["public_keys"], v(&["key-c"]));
    assert_eq!(r.expected.deleted["recipes"], v(&["rec-c", "rec-old"]));
    let soft_c = r.deletes.iter().find(|d| d.id == "img-c").unwrap();
    assert_eq!(
        soft_c.objects,
        v(&[
            "s3://boot-images/img-c/manifest.json",
            "s3://boot-images/img-c/rootfs"
        ])
    );
}

#[test]
fn every_phase_marker_is_there_even_when_nothing_changes() {
    // Export the current system, then add it back: nothing to do, and
    // nothing to verify.
    let current = current();
    let mut archive = archive();
    archive.ims = current.clone();
    archive.bos = None;
    archive.bss = None;
    let mut s3 = s3();
    s3.objects.insert(
        "s3://boot-images/img-a/kernel".into(),
        Some(head(10, KERNEL)),
    );
    s3.objects.insert(
        "s3://boot-images/img-a/rootfs".into(),
        Some(head(12 * MIB, ROOTFS_ETAG)),
    );
    let options = options(false);
    let inputs = Inputs {
        archive: &archive,
        current: &current,
        s3: &s3,
        options: &options,
    };
    let want = v(&[
        "phase preflight",
        "phase backup",
        "phase delete",
        "phase assert",
        "phase s3-restore",
        "phase store-write",
        "phase verify",
    ]);
    let planned = add(&inputs).unwrap();
    assert_eq!(lines(&planned.effects), want);
    assert!(!planned.review.changes && !planned.review.backup.written && !planned.review.restart);
    assert!(
        planned
            .review
            .warnings
            .iter()
            .any(|w| w == "No IMS data to import")
    );
    // update of the same: identical records, present objects, rec-c's object absent and not in the archive.
    let planned = update(&Inputs {
        options: &Options {
            ignore_running_jobs: true,
            ..options.clone()
        },
        ..inputs
    })
    .unwrap_err();
    assert_eq!(
        planned,
        vec![
            "s3://ims/recipes/rec-c/recipe.tar.gz (needed by recipe rec-c): absent, and export.json has no artifact entry for it"
        ]
    );
}

/// HPE's bug 2: a records-only archive imports its records; nothing is
/// uploaded and what S3 lacks is a warning (see
/// docs/hpe-import-export.md#bug-2-an-archive-without-s3-data-crashes-the-import).
#[test]
fn s3_data_null_imports_the_records() {
    let mut archive = archive();
    archive.artifacts = None;
    let (current, s3, options) = (current(), s3(), options(true));
    let planned = update(&Inputs {
        archive: &archive,
        current: &current,
        s3: &s3,
        options: &options,
    })
    .unwrap();
    let l = lines(&planned.effects);
    assert!(!l.iter().any(|l| l.starts_with("upload")), "{l:?}");
    assert!(l.contains(&"write image +[\"img-b\"] ~[\"img-a\"] -[]".to_string()));
    // Without s3_data no manifest lists links: the targets are the
    // manifests, the recipe archive and the link sources.
    assert_eq!(
        planned.review.s3_summary.unavailable,
        v(&[
            "s3://boot-images/img-b/manifest.json",
            "s3://ims/recipes/rec-a/recipe.tar.gz"
        ])
    );
    assert!(
        planned
            .review
            .differences_from_hpe
            .iter()
            .any(|d| d.contains("s3_data: null"))
    );
}

/// Without S3 data, overwrite must not cascade-delete img-a's objects
/// that it needs and cannot restore.
#[test]
fn a_cascade_never_deletes_what_the_archive_cannot_restore() {
    let mut archive = archive();
    archive.artifacts = None;
    let (current, s3, options) = (current(), s3(), options(true));
    let planned = overwrite(&Inputs {
        archive: &archive,
        current: &current,
        s3: &s3,
        options: &options,
    })
    .unwrap();
    let l = lines(&planned.effects);
    assert!(
        l.contains(&"hard image img-a cascade=false".to_string()),
        "{l:?}"
    );
    assert!(l.contains(&"hard image img-c cascade=true".to_string()));
    assert!(
        planned
            .review
            .differences_from_hpe
            .iter()
            .any(|d| d.contains("does not cascade"))
    );
}

/// HPE's bug 5: a changed object under an existing key is a conflict,
/// reported and kept (see
/// docs/hpe-import-export.md#bug-5-an-object-already-under-the-key-is-never-compared).
#[test]
fn a_changed_object_is_a_reported_conflict_never_overwritten() {
    let planned = run(Mode::Update, true).unwrap();
    let t = planned
        .review
        .s3
        .iter()
        .find(|t| t.url == "s3://boot-images/img-a/rootfs")
        .unwrap();
    assert_eq!(t.status, Status::Conflict);
    assert!(
        !planned
            .effects
            .iter()
            .any(|e| matches!(e, Effect::S3UploadFromArchive(u) if u.key == "img-a/rootfs"))
    );
    assert!(
        planned
            .review
            .warnings
            .iter()
            .any(|w| w.starts_with("conflict: s3://boot-images/img-a/rootfs"))
    );
    assert_eq!(
        planned
            .review
            .expected
            .objects
            .iter()
            .find(|o| o.url == t.url)
            .unwrap()
            .etag
            .as_deref(),
        Some(CHANGED),
        "the conflicting object stays"
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let archive = archive();
    let mut current = current();
    current.deleted = None;
    let mut s3 = s3();
    s3.objects.remove("s3://boot-images/k8s/kernel");
    s3.manifests
        .get_mut("s3://boot-images/img-c/manifest.json")
        .unwrap()
        .error = Some("not JSON".into());
    let options = options(false);
    let problems = overwrite(&Inputs {
        archive: &archive,
        current: &current,
        s3: &s3,
        options: &options,
    })
    .unwrap_err();
    assert_eq!(
        problems,
        vec![
            "the current IMS state lacks deleted records: run ims-fetch with include_deleted = true".to_string(),
            "Aborted import due to incomplete jobs: Job job-2 is not complete (status = building_image). Wait until jobs are completed, or pass --ignore-running-jobs".into(),
            "cannot plan the delete of image img-c: its manifest s3://boot-images/img-c/manifest.json cannot be read: not JSON".into(),
            "s3://boot-images/k8s/kernel: s3-restore-plan did not look at it".into(),
        ]
    );
}

/// Overwriting a system with its own export: img-a's objects are what
/// the archive holds, so no cascade deletes and re-uploads them.
#[test]
fn overwrite_keeps_artifacts_it_would_put_back_identically() {
    let (archive, current, options) = (archive(), current(), options(true));
    let mut s3 = s3();
    s3.objects.insert(
        "s3://boot-images/img-a/rootfs".into(),
        Some(head(12 * MIB, ROOTFS_ETAG)),
    );
    let planned = overwrite(&Inputs {
        archive: &archive,
        current: &current,
        s3: &s3,
        options: &options,
    })
    .unwrap();
    let l = lines(&planned.effects);
    assert!(
        l.contains(&"hard image img-a cascade=false".to_string()),
        "{l:?}"
    );
    assert!(l.contains(&"hard image img-c cascade=true".to_string()));
    let uploads: Vec<&String> = l.iter().filter(|l| l.starts_with("upload")).collect();
    assert_eq!(
        uploads,
        vec![
            "upload s3://boot-images/img-a/kernel Absent",
            "upload s3://boot-images/img-b/rootfs Absent",
            "upload s3://boot-images/img-b/manifest.json Absent",
            "upload s3://ims/recipes/rec-a/recipe.tar.gz Absent",
        ]
    );
    assert!(!l.contains(&"backup s3://boot-images/img-a/rootfs".to_string()));
    assert!(
        planned
            .review
            .differences_from_hpe
            .iter()
            .any(|d| d.contains("exactly what the import uploads again"))
    );
}

#[test]
fn diffs_name_added_removed_and_changed_fields() {
    let d = diff(
        &json!({"a": 1, "b": 2, "c": 3}),
        &json!({"a": 1, "b": 5, "d": 4}),
    );
    let names: Vec<(&str, Change)> = d.iter().map(|c| (c.field.as_str(), c.change)).collect();
    assert_eq!(
        names,
        vec![
            ("b", Change::Changed),
            ("c", Change::Removed),
            ("d", Change::Added)
        ]
    );
}

/// The wire names of the review's enums are the host's contract
/// (`cli/review.rs` reads them back).
#[test]
fn actions_and_changes_keep_their_wire_names() {
    let names = |v: Value| v.as_str().unwrap().to_string();
    let actions = [Action::Add, Action::Skip, Action::Keep, Action::Replace];
    let actions: Vec<String> = actions
        .iter()
        .map(|a| names(serde_json::to_value(a).unwrap()))
        .collect();
    assert_eq!(actions, ["add", "skip", "keep", "replace"]);
    let changes = [Change::Added, Change::Removed, Change::Changed];
    let changes: Vec<String> = changes
        .iter()
        .map(|c| names(serde_json::to_value(c).unwrap()))
        .collect();
    assert_eq!(changes, ["added", "removed", "changed"]);
    assert_eq!(
        serde_json::to_value(Mode::SoftOverwrite).unwrap(),
        "soft_overwrite"
    );
}

/// Every effect a mode plans is of a kind its plugin declares (and its
/// workflow grants): the host refuses any other.
#[test]
fn every_mode_emits_only_the_kinds_it_declares() {
    for mode in Mode::ALL {
        let planned = run(mode, true).unwrap();
        for e in &planned.effects {
            assert!(
                mode.effect_kinds().contains(&e.kind()),
                "{} emits {}, which Mode::effect_kinds lacks",
                mode.name(),
                e.kind()
            );
        }
    }
}
