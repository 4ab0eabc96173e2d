//! `validate`, `workflows list` and `plugins list`.
use super::{Cli, Exit};
use imsflow::workflow;

pub async fn validate(cli: &Cli, files: &[String]) -> anyhow::Result<Exit> {
    let rt = super::runtime()?;
    let mut bad = 0;
    let mut results = Vec::new();
    for file in files {
        let outcome = match workflow::load(file) {
            Ok(wf) => wf.load_plugins(&rt).await.map(|_| wf),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(wf) => {
                if !cli.json {
                    println!("{file}: ok ({} steps)", wf.steps.len());
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
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    if bad > 0 {
        anyhow::bail!("{bad} of {} workflow file(s) are invalid", files.len());
    }
    Ok(Exit::Ok)
}

pub fn workflows(cli: &Cli) -> anyhow::Result<Exit> {
    let mut rows = Vec::new();
    for (name, _) in imsflow::stock::STOCK_WORKFLOWS {
        let wf = workflow::load(name)?;
        rows.push(serde_json::json!({ "name": name, "description": wf.description, "steps": wf.steps.len(),
            "params": wf.params.iter().map(|p| serde_json::json!({"name": p.name, "type": p.ty, "default": p.default, "description": p.description})).collect::<Vec<_>>() }));
        if !cli.json {
            println!("{name:<20} {}", wf.description);
            for p in &wf.params {
                let default = p
                    .default
                    .as_ref()
                    .map(|d| format!(" (default {d})"))
                    .unwrap_or_default();
                println!(
                    "    --param {}=<{:?}>{default}  {}",
                    p.name, p.ty, p.description
                );
            }
        }
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
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
            println!("{:<20} {:<8} sha256:{}", i.name, i.version, i.sha256);
            println!("    {}", i.description);
            println!(
                "    services: {}",
                if i.services.is_empty() {
                    "-".into()
                } else {
                    i.services.join(", ")
                }
            );
            println!(
                "    effects:  {}",
                if i.effects.is_empty() {
                    "-".into()
                } else {
                    i.effects.join(", ")
                }
            );
            println!("    imports:  {}", i.imports.join(", "));
        }
        rows.push(serde_json::to_value(i)?);
    }
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(Exit::Ok)
}
