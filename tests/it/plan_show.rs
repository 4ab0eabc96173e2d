//! Golden tests of the plan rendering that `imsflow show` and `--dry-run`
//! print. Regenerate with `UPDATE_GOLDEN=1 cargo test --test it plan_show`.
use crate::support::*;
use imsflow::archive::Format;
use imsflow::plan::effect::{Assertion, DeleteMode, Effect, ImsKind, StoreSummary, TargetState};
use imsflow::plan::{
    InputArchive, OutputTarget, Plan, PlannedEffect, PlannedStep, PluginId, RunFacts, WorkflowId,
};
use imsflow::workflow::Grants;

fn step(id: &str, plugin: &str) -> PlannedStep {
    PlannedStep {
        id: id.into(),
        plugin: PluginId {
            name: plugin.into(),
            version: "0.1.0".into(),
            sha256: "ab".repeat(32),
            source: format!("stock:{plugin}"),
        },
        ran: true,
        grants: Grants::default(),
    }
}

pub(crate) fn plan(effects: Vec<(&str, Effect)>) -> Plan {
    let mut counts = std::collections::HashMap::new();
    let effects = effects
        .into_iter()
        .map(|(step, e)| {
            let n = counts.entry(step).or_insert(0);
            *n += 1;
            PlannedEffect::new(step, *n - 1, e)
        })
        .collect();
    let mut plan = Plan {
        format: imsflow::plan::FORMAT,
        imsflow_version: "0.1.0".into(),
        contract: imsflow::plan::CONTRACT.into(),
        build: None,
        workflow: WorkflowId {
            name: "golden".into(),
            source: "stock:golden".into(),
            sha256: "cd".repeat(32),
        },
        steps: vec![
            step("export", "export-plan"),
            step("restore", "import-strategy"),
        ],
        params: serde_json::from_str(r#"{"include_deleted": false, "target_dir": "/srv/backup"}"#)
            .unwrap(),
        run: RunFacts {
            id: "20261126T064000-abcd1234".into(),
            workflow: "golden".into(),
            timestamp: "20261126064000.123456".into(),
            suffix: "abcd1234".into(),
            dry_run: false,
        },
        system: None,
        target: Some(OutputTarget {
            dir: "/srv/backup".into(),
            name: "export-ims-data-20261126064000.123456-abcd1234".into(),
            format: Format::Tar,
        }),
        input: Some(InputArchive {
            path: "/srv/in.tar".into(),
            size: 3 << 30,
            index_sha256: Some("ef".repeat(32)),
        }),
        effects,
        digests: Default::default(),
        gates: vec![],
        plan_hash: String::new(),
    };
    plan.seal();
    plan
}

fn mixed() -> Plan {
    let upload = |key: &str, precondition| Effect::S3UploadFromArchive {
        path: format!("s3_artifacts/boot-images/{}", key.replace('/', "_")),
        bucket: "boot-images".into(),
        key: key.into(),
        size: 1 << 30,
        sha256: Some("01".repeat(32)),
        content_type: Some("application/octet-stream".into()),
        metadata: Default::default(),
        part_size: Some(8 << 20),
        etag: Some("0123456789abcdef0123456789abcdef-128".into()),
        precondition,
    };
    let mut mixed = plan(vec![
        (
            "export",
            Effect::ArchiveAddObject {
                bucket: "boot-images".into(),
                key: "img1/manifest.json".into(),
                path: "s3_artifacts/boot-images/img1_manifest.json".into(),
                size: 1234,
                etag: "aa".repeat(16),
            },
        ),
        (
            "export",
            Effect::ArchiveAddObject {
                bucket: "boot-images".into(),
                key: "img1/rootfs".into(),
                path: "s3_artifacts/boot-images/img1_rootfs".into(),
                size: 734 << 20,
                etag: "bb".repeat(16) + "-92",
            },
        ),
        (
            "export",
            Effect::ArchiveAddJson {
                path: "notes.json".into(),
                json: "{\"a\":1}".into(),
            },
        ),
        (
            "export",
            Effect::ArchiveAddIndex {
                path: "export.json".into(),
                json: "{}".repeat(600),
                entries_at: "/s3_data/artifacts".into(),
            },
        ),
        (
            "restore",
            Effect::Phase {
                name: "deletes".into(),
                description: "remove what the archive replaces".into(),
            },
        ),
        (
            "restore",
            Effect::ImsDelete {
                ims_kind: ImsKind::Image,
                id: "4e5f".into(),
                name: "compute-cos".into(),
                delete: DeleteMode::Soft,
                fingerprint: "sha256:00".into(),
            },
        ),
        (
            "restore",
            Effect::ImsDelete {
                ims_kind: ImsKind::Recipe,
                id: "9a8b".into(),
                name: String::new(),
                delete: DeleteMode::Purge,
                fingerprint: "sha256:01".into(),
            },
        ),
        (
            "restore",
            Effect::ImsDelete {
                ims_kind: ImsKind::Image,
                id: "7c7c".into(),
                name: "uan".into(),
                delete: DeleteMode::Hard { cascade: true },
                fingerprint: "sha256:02".into(),
            },
        ),
        (
            "restore",
            Effect::ImsDelete {
                ims_kind: ImsKind::Job,
                id: "j0b1".into(),
                name: String::new(),
                delete: DeleteMode::Soft,
                fingerprint: "sha256:04".into(),
            },
        ),
        (
            "restore",
            Effect::Assert {
                assertion: Assertion::ImsEmpty {
                    live: true,
                    deleted: false,
                    jobs: true,
                },
            },
        ),
        ("restore", upload("img2/rootfs", TargetState::Absent)),
        (
            "restore",
            upload(
                "img3/rootfs",
                TargetState::Etag {
                    etag: "ff".repeat(16),
                },
            ),
        ),
        (
            "restore",
            Effect::ImsStoreWrite {
                ims_kind: ImsKind::Image,
                deleted: false,
                records_json: "[]".repeat(100),
                fingerprint: "sha256:03".into(),
                summary: StoreSummary {
                    added: vec!["a".into(), "b".into()],
                    replaced: vec!["c".into()],
                    removed: vec![],
                },
            },
        ),
        ("restore", Effect::ImsRestart),
        (
            "restore",
            Effect::Assert {
                assertion: Assertion::ImportEndState,
            },
        ),
    ]);
    let first_restore = mixed.effects.iter().find(|e| e.step == "restore").unwrap();
    mixed.gates = vec![imsflow::plan::PlannedGate {
        name: "destructive".into(),
        description: "IMS records are deleted and rewritten from here on".into(),
        before: first_restore.id.clone(),
    }];
    mixed.seal();
    mixed
}

#[test]
fn a_mixed_plan_renders_grouped_by_kind_with_totals() {
    golden("show-mixed.txt", &imsflow::plan::render::render(&mixed()));
}

#[test]
fn an_empty_plan_says_there_is_nothing_to_do() {
    golden(
        "show-empty.txt",
        &imsflow::plan::render::render(&plan(vec![])),
    );
}

#[test]
fn a_plan_survives_a_save_and_load_unchanged() {
    let plan = mixed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    plan.save(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "plans are owner-only");
    assert_eq!(Plan::load(&path).unwrap(), plan);
}

#[test]
fn a_plan_of_another_format_is_refused_by_format_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    std::fs::write(&path, r#"{"format": 99, "whatever": true}"#).unwrap();
    let err = Plan::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("has format 99; this imsflow reads format 2"),
        "{err}"
    );
    std::fs::write(&path, "{\n  \"format\": 2,\n  oops\n}").unwrap();
    let err = Plan::load(&path).unwrap_err().to_string();
    assert!(err.contains("p.json:3:3: not an imsflow plan"), "{err}");
}

#[test]
fn plugin_strings_cannot_forge_lines_in_a_plan_under_review() {
    let forged = plan(vec![(
        "export",
        Effect::ArchiveAddObject {
            bucket: "boot-images".into(),
            key: "x\n  export.9  s3://boot-images/harmless -> nothing (1 B)\u{1b}[2K".into(),
            path: "s3_artifacts/x".into(),
            size: 1,
            etag: "e".into(),
        },
    )]);
    let text = imsflow::plan::render::render(&forged);
    assert!(!text.contains("\n  export.9"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(text.contains("x\\n  export.9"), "{text}");
}
