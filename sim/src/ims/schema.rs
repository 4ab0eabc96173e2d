//! Request validation, with marshmallow's messages: IMS rejects unknown
//! fields (so `id` and `created` cannot be posted) and checks each field.
use crate::problem::Problem;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PublicKey,
    Recipe,
    Image,
}

type Check = fn(&Value) -> Result<(), String>;

struct Field {
    name: &'static str,
    required: bool,
    check: Check,
}

const fn req(name: &'static str, check: Check) -> Field {
    Field {
        name,
        required: true,
        check,
    }
}
const fn opt(name: &'static str, check: Check) -> Field {
    Field {
        name,
        required: false,
        check,
    }
}

fn non_empty_string(v: &Value) -> Result<(), String> {
    match v.as_str() {
        Some(s) if !s.is_empty() => Ok(()),
        Some(_) => Err("Shorter than minimum length 1.".into()),
        None => Err("Not a valid string.".into()),
    }
}

fn one_of(v: &Value, choices: &[&str]) -> Result<(), String> {
    match v.as_str() {
        Some(s) if choices.contains(&s) => Ok(()),
        _ => Err(format!("Must be one of: {}.", choices.join(", "))),
    }
}

fn recipe_type(v: &Value) -> Result<(), String> {
    one_of(v, &["kiwi-ng", "packer"])
}
fn distribution(v: &Value) -> Result<(), String> {
    one_of(v, &["sles12", "sles15", "centos7"])
}
fn arch(v: &Value) -> Result<(), String> {
    one_of(v, &["x86_64", "aarch64"])
}
fn boolean(v: &Value) -> Result<(), String> {
    v.is_boolean()
        .then_some(())
        .ok_or_else(|| "Not a valid boolean.".into())
}

fn link(v: &Value) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    let Some(o) = v.as_object() else {
        return Err("Invalid input type.".into());
    };
    if let Some(k) = o
        .keys()
        .find(|k| !["path", "type", "etag"].contains(&k.as_str()))
    {
        return Err(format!("{k}: Unknown field."));
    }
    match (
        o.get("path").and_then(Value::as_str),
        o.get("type").and_then(Value::as_str),
    ) {
        (Some(p), Some("s3")) if !p.is_empty() => {}
        (None, _) => return Err("path: Missing data for required field.".into()),
        (_, Some(t)) if t != "s3" => {
            return Err(format!("type: {t} is not a supported link type; use s3."));
        }
        _ => return Err("type: Missing data for required field.".into()),
    }
    match o.get("etag") {
        None | Some(Value::String(_)) => Ok(()),
        _ => Err("etag: Not a valid string.".into()),
    }
}

fn template_dictionary(v: &Value) -> Result<(), String> {
    let ok = v.as_array().is_some_and(|items| {
        items.iter().all(|i| {
            i.as_object().is_some_and(|o| {
                o.len() == 2
                    && o.get("key").is_some_and(Value::is_string)
                    && o.get("value").is_some_and(Value::is_string)
            })
        })
    });
    ok.then_some(())
        .ok_or_else(|| "Must be a list of {key, value} strings.".into())
}

fn metadata_map(v: &Value) -> Result<(), String> {
    let ok = v
        .as_object()
        .is_some_and(|o| o.values().all(Value::is_string));
    ok.then_some(())
        .ok_or_else(|| "Must be a map of strings.".into())
}

fn metadata_patch(v: &Value) -> Result<(), String> {
    let Some(o) = v.as_object() else {
        return Err("Invalid input type.".into());
    };
    match o.get("operation").and_then(Value::as_str) {
        Some("set")
            if o.get("key").is_some_and(Value::is_string)
                && o.get("value").is_some_and(Value::is_string) =>
        {
            Ok(())
        }
        Some("remove") if o.get("key").is_some_and(Value::is_string) => Ok(()),
        _ => Err("Must be {operation: set|remove, key, value}.".into()),
    }
}

fn post_fields(kind: Kind) -> &'static [Field] {
    const KEY: &[Field] = &[
        req("name", non_empty_string),
        req("public_key", non_empty_string),
    ];
    const RECIPE: &[Field] = &[
        req("name", non_empty_string),
        req("recipe_type", recipe_type),
        req("linux_distribution", distribution),
        opt("link", link),
        opt("template_dictionary", template_dictionary),
        opt("require_dkms", boolean),
        opt("arch", arch),
    ];
    const IMAGE: &[Field] = &[
        req("name", non_empty_string),
        opt("link", link),
        opt("arch", arch),
        opt("metadata", metadata_map),
    ];
    match kind {
        Kind::PublicKey => KEY,
        Kind::Recipe => RECIPE,
        Kind::Image => IMAGE,
    }
}

fn patch_fields(kind: Kind) -> &'static [Field] {
    const RECIPE: &[Field] = &[
        opt("link", link),
        opt("arch", arch),
        opt("require_dkms", boolean),
        opt("template_dictionary", template_dictionary),
    ];
    const IMAGE: &[Field] = &[
        opt("link", link),
        opt("arch", arch),
        opt("metadata", metadata_patch),
    ];
    match kind {
        Kind::PublicKey => &[],
        Kind::Recipe => RECIPE,
        Kind::Image => IMAGE,
    }
}

fn check(body: &Value, fields: &[Field]) -> Result<Map<String, Value>, Problem> {
    let Some(obj) = body.as_object().filter(|o| !o.is_empty()) else {
        return Err(Problem::bad_request("No input provided"));
    };
    let mut errors = Map::new();
    for key in obj.keys() {
        if !fields.iter().any(|f| f.name == key) {
            errors.insert(key.clone(), json!(["Unknown field."]));
        }
    }
    for f in fields {
        match obj.get(f.name) {
            None if f.required => {
                errors.insert(f.name.into(), json!(["Missing data for required field."]));
            }
            None => {}
            Some(v) => {
                if let Err(m) = (f.check)(v) {
                    errors.insert(f.name.into(), json!([m]));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(obj.clone())
    } else {
        Err(Problem::invalid(Value::Object(errors)))
    }
}

/// Validates a POST body and fills IMS's defaults.
pub fn post(kind: Kind, body: &Value) -> Result<Map<String, Value>, Problem> {
    let mut rec = check(body, post_fields(kind))?;
    let mut default = |k: &str, v: Value| {
        rec.entry(k.to_string()).or_insert(v);
    };
    match kind {
        Kind::PublicKey => {}
        Kind::Recipe => {
            default("template_dictionary", json!([]));
            default("require_dkms", json!(true));
            default("arch", json!("x86_64"));
            default("link", Value::Null);
        }
        Kind::Image => {
            default("arch", json!("x86_64"));
            default("metadata", json!({}));
            default("link", Value::Null);
        }
    }
    if let Some(Value::Object(link)) = rec.get_mut("link") {
        link.entry("etag").or_insert(json!(""));
    }
    Ok(rec)
}

/// Validates a PATCH body of a live record.
pub fn patch(kind: Kind, body: &Value) -> Result<Map<String, Value>, Problem> {
    let mut p = check(body, patch_fields(kind))?;
    if let Some(Value::Object(link)) = p.get_mut("link") {
        link.entry("etag").or_insert(json!(""));
    }
    Ok(p)
}
