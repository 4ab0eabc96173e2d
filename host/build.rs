//! Builds every stock plugin in `../plugins` for wasm32-wasip2 and embeds the
//! components, plus the stock workflows in `../workflows`, so that one
//! `imsflow` binary carries them all.
//!
//! For tests and benches (the `test-hooks` feature) it builds the whole wasm
//! workspace in the same cargo run: the test plugins and the example site
//! plugin too, so their shared dependencies compile once and no test waits on
//! cargo. `IMSFLOW_WASM_DIR` tells the tests where the components are, as
//! wasmtime's test-programs artifacts build script does.
use std::{env, fs, path::PathBuf, process::Command};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let everything = env::var_os("CARGO_FEATURE_TEST_HOOKS").is_some();
    for watched in ["plugins", "wit", "workflows", "tests/plugins", "examples"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    build_identity(&root, &manifest_dir);

    require_wasm_target();
    let plugins = stock_plugin_crates(&root.join("plugins"));
    // A shared target dir outside OUT_DIR: plugin builds are reused across
    // profiles and by the test harness, which builds the test plugins there.
    let wasm_target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "--manifest-path",
    ])
    .arg(root.join("plugins/Cargo.toml"))
    .env("CARGO_TARGET_DIR", &wasm_target);
    if everything {
        cmd.arg("--workspace");
    } else {
        for name in &plugins {
            cmd.args(["-p", name]);
        }
    }
    // Flags meant for the host build must not leak into the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the stock plugins");
    assert!(
        status.success(),
        "building the wasm workspace (plugins/Cargo.toml) failed"
    );

    let components = wasm_target.join("wasm32-wasip2/release");
    println!("cargo:rustc-env=IMSFLOW_WASM_DIR={}", components.display());

    let mut table = String::from("pub static STOCK_PLUGINS: &[(&str, &[u8])] = &[\n");
    for name in &plugins {
        let built = components.join(format!("{}.wasm", name.replace('-', "_")));
        let copy = out.join(format!("{name}.wasm"));
        fs::copy(&built, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
        table.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", copy));
    }
    table.push_str("];\n\npub static STOCK_WORKFLOWS: &[(&str, &str)] = &[\n");
    let mut workflows: Vec<_> = fs::read_dir(root.join("workflows"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    workflows.retain(|p| p.extension().is_some_and(|e| e == "toml"));
    workflows.sort();
    for path in workflows {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        table.push_str(&format!("    ({stem:?}, include_str!({path:?})),\n"));
    }
    table.push_str("];\n");
    fs::write(out.join("stock.rs"), table).unwrap();
}

/// Fails at once, in one line that says the fix, when the toolchain lacks the
/// wasm32-wasip2 standard library: otherwise cargo compiles every plugin
/// dependency for minutes before it stops on "can't find crate for `std`".
fn require_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let Some(sysroot) = sysroot else { return };
    if !sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
        eprintln!(
            "error: the Rust target wasm32-wasip2 is not installed (imsflow's plugins are built for it); \
             fix: run `rustup toolchain install` in the repository, or `rustup target add wasm32-wasip2`"
        );
        std::process::exit(1);
    }
}

/// Plugin crates are the directories of `plugins/` whose Cargo.toml builds a
/// `cdylib` (the SDK is a plain library and is not embedded).
fn stock_plugin_crates(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).expect("reading plugins/") {
        let path = entry.unwrap().path();
        let Ok(manifest) = fs::read_to_string(path.join("Cargo.toml")) else {
            continue;
        };
        if manifest.contains("cdylib") {
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    names
}

/// What `imsflow --version` and every plan say about this build: the commit
/// (and whether the tree differed from it), the build date, the wasmtime
/// version and the target. `SOURCE_DATE_EPOCH` fixes the date, for
/// reproducible packages. Without git (a source tarball) the commit is
/// `unknown`.
fn build_identity(root: &std::path::Path, manifest_dir: &std::path::Path) {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // Dirty: any change to a tracked file. The host's sources are watched so
    // that an edit reruns this; a commit changes HEAD or the branch's ref.
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={}", root.join(p).display());
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("src").display()
    );
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let when = env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .unwrap_or_else(std::time::SystemTime::now);
    // wasmtime's version as resolved, from the lock file (its crate exports none).
    let lock = fs::read_to_string(root.join("Cargo.lock")).unwrap_or_default();
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=IMSFLOW_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=IMSFLOW_GIT_DIRTY={dirty}");
    println!(
        "cargo:rustc-env=IMSFLOW_BUILD_DATE={}",
        humantime::format_rfc3339_seconds(when)
    );
    println!("cargo:rustc-env=IMSFLOW_WASMTIME_VERSION={wasmtime}");
    println!(
        "cargo:rustc-env=IMSFLOW_TARGET={}",
        env::var("TARGET").unwrap()
    );
}
