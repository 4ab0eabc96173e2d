//! The right system: an explicitly named config file must exist, a run says
//! which CSM it changes and where each setting came from, a saved plan is
//! bound to the system it was made against, and its paths are absolute.
use crate::support::*;
use csm_sim::seed::SeedSpec;
use csm_sim::testing::System;
use imsflow::plan::Plan;
use std::path::Path;

/// `imsflow` run in `dir`, with the given config and environment.
fn cli_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> CliRun {
    let mut cmd = imsflow_command();
    cmd.args(args)
        .current_dir(dir)
        .env_remove("IMSFLOW_CONFIG")
        .env_remove("KUBECONFIG")
        .envs(env.iter().copied());
    let out = cmd.output().unwrap();
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn an_explicitly_named_config_file_that_does_not_exist_is_an_error() {
    let home = tempfile::tempdir().unwrap();
    let home_env = ("HOME", home.path().to_str().unwrap());
    let missing = home.path().join("typo/imsflow.toml");
    let missing = missing.to_str().unwrap();
    let hello = ["run", "hello", "--dry-run"];

    let flag = cli_in(
        home.path(),
        &[&["--config", missing][..], &hello].concat(),
        &[home_env],
    );
    assert_eq!(flag.code, 1, "{}\n{}", flag.stdout, flag.stderr);
    assert!(
        flag.stderr.contains(&format!("config file {missing}"))
            && flag.stderr.contains("named by --config, does not exist"),
        "{}",
        flag.stderr
    );

    let env = cli_in(
        home.path(),
        &hello,
        &[home_env, ("IMSFLOW_CONFIG", missing)],
    );
    assert_eq!(env.code, 1, "{}\n{}", env.stdout, env.stderr);
    assert!(
        env.stderr.contains(&format!("config file {missing}"))
            && env
                .stderr
                .contains("named by $IMSFLOW_CONFIG, does not exist"),
        "{}",
        env.stderr
    );
    // Connecting commands refuse it too, before reaching any system.
    let export = cli_in(
        home.path(),
        &["--config", missing, "export", "--dry-run"],
        &[home_env],
    );
    assert_eq!(export.code, 1, "{}", export.stderr);
    assert!(
        export.stderr.contains("named by --config, does not exist"),
        "{}",
        export.stderr
    );

    // The default file may be absent; when present it is read.
    let fine = cli_in(home.path(), &hello, &[home_env]);
    assert_eq!(fine.code, 2, "{}\n{}", fine.stdout, fine.stderr);
    let default = home.path().join(".config/imsflow/imsflow.toml");
    std::fs::create_dir_all(default.parent().unwrap()).unwrap();
    std::fs::write(&default, "no_such_setting = 1\n").unwrap();
    let read = cli_in(home.path(), &hello, &[home_env]);
    assert_eq!(read.code, 1, "{}", read.stderr);
    assert!(
        read.stderr.contains(default.to_str().unwrap()),
        "{}",
        read.stderr
    );
}

/// A plan records absolute paths: applied from another directory, the
/// archive lands where the plan said, not under the current directory.
#[test]
fn a_plan_applied_from_another_directory_writes_where_it_was_planned() {
    let scratch = tempfile::tempdir().unwrap();
    let (planned_in, applied_in) = (scratch.path().join("a"), scratch.path().join("b"));
    for dir in [&planned_in, &applied_in] {
        std::fs::create_dir_all(dir.join("out")).unwrap();
    }
    let made = cli_in(
        &planned_in,
        &["plan", "hello", "-p", "target_dir=out", "-o", "plan.json"],
        &[],
    );
    assert_eq!(made.code, 0, "{}\n{}", made.stdout, made.stderr);
    let plan_file = planned_in.join("plan.json");
    let plan = Plan::load(&plan_file).unwrap();
    assert_eq!(plan.target.as_ref().unwrap().dir, planned_in.join("out"));

    let applied = cli_in(&applied_in, &["apply", plan_file.to_str().unwrap()], &[]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    assert_eq!(dir_entries(&planned_in.join("out")).len(), 1);
    assert!(
        dir_entries(&applied_in.join("out")).is_empty(),
        "the archive went under the directory apply ran in"
    );

    // A workflow file named relatively is recorded, and checked at apply,
    // by its absolute path.
    let hello = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/hello.toml"),
    )
    .unwrap();
    std::fs::write(planned_in.join("mine.toml"), hello).unwrap();
    let made = cli_in(
        &planned_in,
        &[
            "plan",
            "mine.toml",
            "-p",
            "target_dir=out",
            "-o",
            "mine.json",
        ],
        &[],
    );
    assert_eq!(made.code, 0, "{}\n{}", made.stdout, made.stderr);
    let plan_file = planned_in.join("mine.json");
    let plan = Plan::load(&plan_file).unwrap();
    assert_eq!(
        plan.workflow.source,
        planned_in.join("mine.toml").display().to_string()
    );
    let applied = cli_in(&applied_in, &["apply", plan_file.to_str().unwrap()], &[]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    assert_eq!(dir_entries(&planned_in.join("out")).len(), 2);
}

/// The seed of a second, empty simulated CSM: another system to apply to.
fn empty() -> SeedSpec {
    SeedSpec {
        images: 0,
        recipes: 0,
        public_keys: 0,
        deleted: 0,
        jobs: 0,
        running_jobs: 0,
        ..csm_sim::testing::small_spec()
    }
}

/// An import planned against one system prints that system, records it in
/// the plan (with absolute paths), and is refused, naming both systems and
/// before anything is done, when applied with a config that reaches
/// another; applied to its own system it goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_bound_to_the_system_it_was_made_against() {
    let (a, b) = (
        System::start(&no_running_jobs()).await,
        System::start(&empty()).await,
    );
    let (config_a, config_b) = (
        a.data.path().join("imsflow.toml"),
        b.data.path().join("imsflow.toml"),
    );
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path().join("work");
    std::fs::create_dir_all(work.join("archives")).unwrap();
    std::fs::create_dir_all(work.join("backup")).unwrap();
    let exported = cli_in(
        &work,
        &["export", "archives"],
        &[("IMSFLOW_CONFIG", config_a.to_str().unwrap())],
    );
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    let tar = std::fs::read_dir(work.join("archives"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let tar = format!("archives/{}", tar.to_string_lossy());

    // Planned with relative paths, against system A named by --config.
    let planned = cli_in(
        &work,
        &[
            "--config",
            config_a.to_str().unwrap(),
            "import",
            "overwrite",
            "-f",
            &tar,
            "-b",
            "backup",
            "--plan-out",
            "plan.json",
        ],
        &[],
    );
    assert_eq!(planned.code, 0, "{}\n{}", planned.stdout, planned.stderr);
    let gateway_a = &a.running.base_url;
    let gateway_b = &b.running.base_url;
    assert!(
        planned.stdout.contains(&format!(
            "gateway     {gateway_a} (config file {})",
            config_a.display()
        )) && planned.stdout.contains("S3          ")
            && planned
                .stdout
                .contains(&format!("Kubernetes  {gateway_a}, context `csm-sim`")),
        "the target is printed, with where each setting came from:\n{}",
        planned.stdout
    );
    let plan_file = work.join("plan.json");
    let plan = Plan::load(&plan_file).unwrap();
    let system = plan.system.as_ref().expect("the plan records its system");
    assert_eq!(&system.gateway.url, gateway_a);
    assert_eq!(plan.target.as_ref().unwrap().dir, work.join("backup"));
    assert_eq!(plan.input.as_ref().unwrap().path, work.join(&tar));
    assert_eq!(
        plan.params["backup_dir"],
        work.join("backup").to_str().unwrap()
    );

    // Applied, from elsewhere, with the config of system B: refused.
    let elsewhere = scratch.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let plan_arg = plan_file.to_str().unwrap();
    let refused = cli_in(
        &elsewhere,
        &["apply", plan_arg, "--yes"],
        &[("IMSFLOW_CONFIG", config_b.to_str().unwrap())],
    );
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains(&format!("gateway: planned {gateway_a}, now {gateway_b}"))
            && refused.stderr.contains(&format!(
                "Kubernetes API server: planned {gateway_a}, now {gateway_b}"
            ))
            && refused.stderr.contains("nothing was done"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stdout.contains(&format!(
            "gateway     {gateway_b} (config file {})",
            config_b.display()
        )),
        "the system it would have changed is printed: {}",
        refused.stdout
    );
    assert!(
        !imsflow::journal::path_for(&plan_file).exists(),
        "a refused plan starts no journal"
    );
    assert!(dir_entries(&work.join("backup")).is_empty());

    // --json carries the target too, and the same refusal.
    let json = cli_in(
        &elsewhere,
        &["--json", "apply", plan_arg],
        &[("IMSFLOW_CONFIG", config_b.to_str().unwrap())],
    );
    assert_eq!(json.code, 1);
    assert!(json.stdout.contains("gateway: planned"), "{}", json.stdout);

    // Its own system, reached through the environment: it goes on (to the
    // gate), and the backup lands where it was planned.
    let own = cli_in(
        &elsewhere,
        &["--json", "apply", plan_arg, "--until", "destructive"],
        &[
            ("IMSFLOW_CONFIG", config_b.to_str().unwrap()),
            ("IMSFLOW_GATEWAY", gateway_a),
            ("IMSFLOW_KUBECONFIG", a.kubeconfig().to_str().unwrap()),
        ],
    );
    assert_eq!(own.code, 0, "{}\n{}", own.stdout, own.stderr);
    let doc: serde_json::Value = serde_json::from_str(&own.stdout).unwrap();
    assert_eq!(doc["system"]["gateway"]["url"], gateway_a.as_str());
    assert_eq!(doc["system"]["gateway"]["from"], "$IMSFLOW_GATEWAY");
    assert_eq!(
        doc["system"]["kubernetes"]["from"],
        format!(
            "kubeconfig {}, from $IMSFLOW_KUBECONFIG",
            a.kubeconfig().display()
        )
    );
    assert_eq!(dir_entries(&work.join("backup")).len(), 1);
    assert!(dir_entries(&elsewhere).is_empty());
}
