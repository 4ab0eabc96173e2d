//! `validate`, `workflows list` and `plugins list`.
use super::out::outln;
use super::{Cli, Exit};
use imsflow::workflow;

pub async fn validate(cli: &Cli, files: &[String]) -> anyhow::Result<Exit> {
    let services = super::site_services(cli)?;
    let rt = super::runtime()?;
    let mut bad = 0;
    let mut results = Vec::new();
    for file in files {
        let outcome = match workflow::load_with(file, &services) {
            Ok(wf) => imsflow::engine::load_plugins(&wf, &rt).await.map(|_| wf),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(wf) => {
                if !cli.json {
                    let n = wf.steps.len();
                    outln!("{file}: ok ({n} step{})", if n == 1 { "" } else { "s" });
                }
                results.push(serde_json::json!({ "file": file, "ok": true }));
            }
            Err(e) => {
                bad += 1;
                if !cli.json {
                    eprintln!("{e}");
                }
                let errors: Vec<_> = e.0.iter().map(|d| serde_json::json!({"line": d.line, "column": d.column, "message": d.message})).collect();
                results.push(serde_json::json!({ "file": file, "ok": false, "errors": errors }));
            }
        }
    }
    // One document with --json: the verdicts are the answer, exit 1 says
    // that one failed; the text view ends with the count.
    if cli.json {
        outln!("{}", serde_json::to_string_pretty(&results)?);
    } else if bad > 0 {
        eprintln!(
            "error: {bad} of {} workflow file(s) are invalid",
            files.len()
        );
    }
    Ok(if bad > 0 { Exit::Failed } else { Exit::Ok })
}

pub fn workflows(cli: &Cli) -> anyhow::Result<Exit> {
    let mut rows = Vec::new();
    for (name, _) in imsflow::stock::STOCK_WORKFLOWS {
        let wf = workflow::load(name)?;
        rows.push(serde_json::json!({ "name": name, "description": wf.description, "steps": wf.steps.len(),
            "params": wf.params.iter().map(|p| serde_json::json!({"name": p.name, "type": p.ty, "default": p.default, "description": p.description})).collect::<Vec<_>>() }));
        if !cli.json {
            outln!("{name:<20} {}", wf.description);
            for p in &wf.params {
                let default = p
                    .default
                    .as_ref()
                    .map(|d| format!(" (default {d})"))
                    .unwrap_or_default();
                outln!(
                    "    --param {}=<{:?}>{default}  {}",
                    p.name,
                    p.ty,
                    p.description
                );
            }
        }
    }
    if cli.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(Exit::Ok)
}

pub async fn plugins(cli: &Cli) -> anyhow::Result<Exit> {
    let rt = super::runtime()?;
    let mut rows = Vec::new();
    for name in imsflow::plugin::stock_names() {
        let bytes = imsflow::plugin::load(&imsflow::plugin::PluginRef::Stock(name.into()))?;
        let plugin = rt.load(&bytes).await?;
        let i = &plugin.info;
        if !cli.json {
            outln!("{:<20} {:<8} sha256:{}", i.name, i.version, i.sha256);
            outln!("    {}", i.description);
            outln!(
                "    services: {}",
                if i.services.is_empty() {
                    "-".into()
                } else {
                    i.services.join(", ")
                }
            );
            outln!(
                "    effects:  {}",
                if i.effects.is_empty() {
                    "-".into()
                } else {
                    i.effects.join(", ")
                }
            );
            outln!("    imports:  {}", i.imports.join(", "));
        }
        rows.push(serde_json::to_value(i)?);
    }
    if cli.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(Exit::Ok)
}

/// Why a file is not a plugin, said before wasmtime is asked, in the user's terms.
fn not_a_component(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 8 && bytes.starts_with(b"\0asm") {
        return Some("it is truncated: a WebAssembly header is 8 bytes");
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Some(
            "it is not WebAssembly (no `\\0asm` header); an imsflow plugin is a WebAssembly component built with `cargo build --release --target wasm32-wasip2`",
        );
    }
    // Bytes 4..8: version and layer; layer 0 is a core module, 1 a component.
    if bytes[6..8] == [0, 0] {
        return Some(
            "it is a core WebAssembly module, not a component; build the plugin with `--target wasm32-wasip2` (wasm32-unknown-unknown and wasm32-wasip1 give core modules)",
        );
    }
    None
}

pub async fn inspect(cli: &Cli, file: &std::path::Path) -> anyhow::Result<Exit> {
    use imsflow::plugin::{PluginRef, load};
    let plugin = load(&PluginRef::File {
        path: file.to_path_buf(),
        sha256: None,
    })?;
    let refuse =
        |why: String| anyhow::anyhow!("{} is not an imsflow plugin: {why}", file.display());
    if let Some(why) = not_a_component(&plugin.bytes) {
        return Err(refuse(why.into()));
    }
    let rt = super::runtime()?;
    let loaded = rt.load(&plugin).await.map_err(|e| match e {
        imsflow::sandbox::LoadError::Invalid { reason, .. } => refuse(format!(
            "it is a component, but not of imsflow's `step` world (imports from {} and WASI p2, exports `describe` and `run`): {reason}",
            imsflow::sandbox::CONTRACT_PACKAGE
        )),
        other => refuse(format!("{other:#}")),
    })?;
    let i = &loaded.info;
    let contracts = imsflow::sandbox::contracts(&i.imports);
    let contract = if contracts.is_empty() {
        "- (imports nothing from imsflow:plugin)".to_string()
    } else {
        contracts.join(", ")
    };
    if cli.json {
        let mut v = serde_json::to_value(i)?;
        v["file"] = file.display().to_string().into();
        v["contract"] = serde_json::to_value(&contracts)?;
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Exit::Ok);
    }
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".to_string()
        } else {
            l.join(", ")
        }
    };
    outln!("file:        {}", file.display());
    outln!("name:        {}", i.name);
    outln!("version:     {}", i.version);
    outln!("description: {}", i.description);
    outln!("sha256:      {}", i.sha256);
    outln!("contract:    {contract}");
    outln!("services:    {}", list(&i.services));
    outln!("effects:     {}", list(&i.effects));
    outln!("imports:");
    for import in &i.imports {
        outln!("    {import}");
    }
    Ok(Exit::Ok)
}

/// What `plugins new` scaffolds.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Template {
    /// A link-discovery plugin for the export (one function over a Host).
    LinkSource,
}

const LINK_SOURCE: [(&str, &str); 3] = [
    (
        "Cargo.toml",
        include_str!("../../../templates/link-source/Cargo.toml.in"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../templates/link-source/lib.rs.in"),
    ),
    (
        "README.md",
        include_str!("../../../templates/link-source/README.md.in"),
    ),
];

pub fn scaffold(
    cli: &Cli,
    kind: Template,
    name: &str,
    dir: &std::path::Path,
    sdk: Option<&std::path::Path>,
) -> anyhow::Result<Exit> {
    use anyhow::Context;
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        anyhow::bail!(
            "`{name}` is not a plugin name: use lowercase letters, digits and `-`, starting with a letter (at most 64)"
        );
    }
    let sdk = match sdk {
        Some(p) => p.to_path_buf(),
        None => {
            let built_from =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
            if !built_from.join("Cargo.toml").is_file() {
                anyhow::bail!(
                    "the SDK this imsflow was built from ({}) is not there; give the `plugins/sdk` directory of an imsflow checkout with --sdk",
                    built_from.display()
                );
            }
            built_from
        }
    };
    let sdk = std::path::absolute(&sdk)
        .and_then(|p| p.canonicalize())
        .with_context(|| format!("the SDK directory {}", sdk.display()))?;
    if !sdk.join("Cargo.toml").is_file() || !sdk.join("wit/plugin.wit").is_file() {
        anyhow::bail!(
            "{} is not the imsflow SDK (it needs Cargo.toml and wit/plugin.wit)",
            sdk.display()
        );
    }
    let target = dir.join(name);
    if target.exists() {
        anyhow::bail!(
            "{} already exists; refusing to overwrite it",
            target.display()
        );
    }
    let files = match kind {
        Template::LinkSource => LINK_SOURCE,
    };
    // A TOML string written by the TOML serializer: any quote, backslash or
    // newline in the path is escaped, so cargo reads back this very path.
    let sdk_text = match sdk.to_str() {
        Some(path) => toml::Value::String(path.to_string()).to_string(),
        None => anyhow::bail!(
            "the SDK path {} is not valid UTF-8, which Cargo.toml cannot hold; move the SDK to a UTF-8 path",
            sdk.display()
        ),
    };
    for (path, text) in files {
        let dest = target.join(path);
        std::fs::create_dir_all(dest.parent().unwrap())
            .with_context(|| format!("creating {}", dest.parent().unwrap().display()))?;
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk_text);
        std::fs::write(&dest, text).with_context(|| format!("writing {}", dest.display()))?;
    }
    if cli.json {
        outln!("{}", serde_json::json!({ "created": target, "sdk": sdk }));
    } else {
        outln!("created {} (SDK: {})", target.display(), sdk.display());
        outln!(
            "next: cd {} && cargo test && cargo build --release --target wasm32-wasip2",
            target.display()
        );
    }
    Ok(Exit::Ok)
}
