//! Shared test helpers: building the test plugins, a runtime with a shared
//! compile cache, and running a workflow written inline.
use imsflow::backends::Backends;
use imsflow::engine::{Engine, RunError, RunOptions, RunReport};
use imsflow::sandbox::Runtime;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The directory of the wasm components: the test plugins, the stock plugins
/// and the example, built by build.rs before any test runs.
pub fn test_plugin_dir() -> &'static Path {
    Path::new(env!("IMSFLOW_WASM_DIR"))
}

/// Path of a built test plugin, e.g. `test_plugin("spin")`.
pub fn test_plugin(name: &str) -> PathBuf {
    test_plugin_dir().join(format!("{}.wasm", name.replace('-', "_")))
}

/// A runtime sharing one on-disk compile cache across tests.
pub fn runtime() -> Arc<Runtime> {
    Arc::new(Runtime::new(Some(target_dir().join("test-compile-cache"))).unwrap())
}

/// A scratch directory with a workflow file written into it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `wf.toml`; `@PLUGINS@` in the text is replaced by the test plugin directory.
    pub fn workflow(&self, text: &str) -> imsflow::workflow::Workflow {
        let text = text.replace("@PLUGINS@", test_plugin_dir().to_str().unwrap());
        let path = self.path().join("wf.toml");
        std::fs::write(&path, text).unwrap();
        imsflow::workflow::load(path.to_str().unwrap())
            .unwrap_or_else(|e| panic!("invalid test workflow:\n{e}"))
    }
}

pub async fn run(
    wf: &imsflow::workflow::Workflow,
    params: &[(&str, &str)],
    dry_run: bool,
) -> Result<RunReport, RunError> {
    run_with(runtime(), Backends::default(), wf, params, dry_run).await
}

pub async fn run_with(
    runtime: Arc<Runtime>,
    backends: Backends,
    wf: &imsflow::workflow::Workflow,
    params: &[(&str, &str)],
    dry_run: bool,
) -> Result<RunReport, RunError> {
    let opts = RunOptions {
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        dry_run,
        observer: imsflow::observe::silent(),
    };
    Engine::new(runtime, backends).run(wf, &opts).await
}

/// The error message of the single failed step of a run that must fail.
pub fn failure_of(result: Result<RunReport, RunError>) -> String {
    match result {
        Err(RunError::StepsFailed { failed, .. }) => {
            assert_eq!(failed.len(), 1, "expected one failed step, got {failed:?}");
            failed[0].1.clone()
        }
        Err(other) => panic!("expected a failed step, got error: {other}"),
        Ok(report) => panic!(
            "expected a failed step, the run succeeded: {:?}",
            report.steps
        ),
    }
}

/// What a run of the `imsflow` binary printed and returned.
/// The small seed without running jobs (an export aborts on them, and every
/// import but `add` refuses them).
pub fn no_running_jobs() -> csm_sim::seed::SeedSpec {
    csm_sim::seed::SeedSpec {
        running_jobs: 0,
        ..csm_sim::testing::small_spec()
    }
}

/// The keys of the multipart uploads still open in `bucket` (an aborted or
/// completed upload leaves none).
pub async fn open_uploads(s3: &csm_sim::s3::S3, bucket: &str) -> Vec<String> {
    s3.client()
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .uploads()
        .iter()
        .map(|u| u.key().unwrap_or_default().to_string())
        .collect()
}

pub struct CliRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `imsflow` binary with the shared compile cache, the connection
/// config of a simulated CSM when given, and extra environment variables.
/// The imsflow binary, with the tests' compile cache and state directory
/// (journals of runs), never the user's.
pub fn imsflow_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imsflow"));
    cmd.env("IMSFLOW_CACHE_DIR", target_dir().join("test-compile-cache"))
        .env("IMSFLOW_STATE_DIR", target_dir().join("test-state"));
    cmd
}

/// The imsflow binary run in a child with `args`, paused by the test hook at
/// `point` (`<effect index>:<before|started|executed>`); returns once it is
/// there. Removing `flag` lets it go on; a signal stops it.
pub fn imsflow_paused(
    config: &Path,
    args: &[&str],
    point: &str,
    flag: &Path,
) -> std::process::Child {
    let _ = std::fs::remove_file(flag);
    let child = imsflow_command()
        .args(args)
        .env("IMSFLOW_CONFIG", config)
        .env("IMSFLOW_TEST_PAUSE_AT", point)
        .env("IMSFLOW_TEST_PAUSE_FILE", flag)
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !flag.exists() {
        assert!(
            started.elapsed().as_secs() < 120,
            "imsflow {args:?} never reached {point}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

pub fn imsflow_cli(config: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> CliRun {
    let mut cmd = imsflow_command();
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .envs(env.iter().copied());
    if let Some(config) = config {
        cmd.env("IMSFLOW_CONFIG", config);
    }
    CliRun::of(cmd.output().unwrap())
}

impl CliRun {
    pub fn of(out: std::process::Output) -> CliRun {
        CliRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Names in a directory, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Members of a tar (in order) or a directory, with their bytes.
pub fn archive_members(archive: &Path) -> Vec<(String, Vec<u8>)> {
    if archive.is_dir() {
        let reader = imsflow::archive::ArchiveReader::open(archive).unwrap();
        return reader
            .members()
            .iter()
            .map(|m| {
                (
                    m.path.clone(),
                    std::fs::read(archive.join(&m.path)).unwrap(),
                )
            })
            .collect();
    }
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// Compares `actual` with `tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites it.
pub fn golden(name: &str, actual: &str) {
    let path = repo_root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        actual == expected,
        "{} differs from the rendering:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Copies the tar `ours` to `path` with its `export.json` rewritten by
/// `edit` (an archive as someone else made, or tampered with, it).
pub fn rewrite_export_json(ours: &Path, path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut reader = tar::Archive::new(std::fs::File::open(ours).unwrap());
    let mut writer = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut edit = Some(edit);
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().into_owned();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut body).unwrap();
        if name.to_str() == Some("export.json") {
            let mut doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (edit.take().unwrap())(&mut doc);
            body = serde_json::to_vec(&doc).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        writer.append_data(&mut header, &name, &body[..]).unwrap();
    }
    writer.finish().unwrap();
}

/// Rewrites a plan file through `edit` and seals it again, as a plan made
/// elsewhere would be (a consistent hash, different facts).
pub fn reseal(path: &Path, edit: impl FnOnce(&mut imsflow::plan::Plan)) {
    let mut plan: imsflow::plan::Plan =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    edit(&mut plan);
    plan.seal();
    plan.save(path).unwrap();
}

// ---- heap accounting for the bounded-memory tests (the whole binary's allocator) ----

/// Counts, per thread, the bytes allocated and not yet freed, and their
/// peak, so that a test can bound the memory of a call made on its own
/// thread (RSS cannot: a child's peak RSS includes the test process's).
/// The thread-locals are const-initialised and have no destructor, as an
/// allocator requires.
struct CountingAlloc;

thread_local! {
    static LIVE: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    static PEAK: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result and the most heap it held at once.
pub fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(|l| l.get());
    PEAK.with(|p| p.set(start));
    let out = f();
    (out, (PEAK.with(|p| p.get()) - start).max(0) as usize)
}

/// Bytes a child printed, as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
