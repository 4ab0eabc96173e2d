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

/// A field check: `Err` is the field's entry in `errors`, a list of
/// messages or, for nested fields, an object of the nested fields' errors
/// (marshmallow's shape).
type Check = fn(&Value) -> Result<(), Value>;

fn msg(m: impl Into<String>) -> Value {
    json!([m.into()])
}

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

fn non_empty_string(v: &Value) -> Result<(), Value> {
    match v.as_str() {
        Some(s) if !s.is_empty() => Ok(()),
        Some(_) => Err(msg("Shorter than minimum length 1.")),
        None => Err(msg("Not a valid string.")),
    }
}

fn string(v: &Value) -> Result<(), Value> {
    v.is_string()
        .then_some(())
        .ok_or_else(|| msg("Not a valid string."))
}

fn one_of(v: &Value, choices: &[&str]) -> Result<(), Value> {
    match v.as_str() {
        Some(s) if choices.contains(&s) => Ok(()),
        _ => Err(msg(format!("Must be one of: {}.", choices.join(", ")))),
    }
}

fn recipe_type(v: &Value) -> Result<(), Value> {
    one_of(v, &["kiwi-ng", "packer"])
}
fn distribution(v: &Value) -> Result<(), Value> {
    one_of(v, &["sles12", "sles15", "centos7"])
}
fn arch(v: &Value) -> Result<(), Value> {
    one_of(v, &["x86_64", "aarch64"])
}

/// marshmallow's `Boolean`: besides true and false it takes the truthy and
/// falsy strings and numbers ("yes", "off", 1, ...), and stores a bool.
pub fn as_boolean(v: &Value) -> Option<bool> {
    const TRUTHY: &[&str] = &[
        "t", "T", "true", "True", "TRUE", "on", "On", "ON", "y", "Y", "yes", "Yes", "YES", "1",
    ];
    const FALSY: &[&str] = &[
        "f", "F", "false", "False", "FALSE", "off", "Off", "OFF", "n", "N", "no", "No", "NO", "0",
    ];
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if TRUTHY.contains(&s.as_str()) => Some(true),
        Value::String(s) if FALSY.contains(&s.as_str()) => Some(false),
        Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
        Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
        _ => None,
    }
}

fn boolean(v: &Value) -> Result<(), Value> {
    as_boolean(v)
        .map(|_| ())
        .ok_or_else(|| msg("Not a valid boolean."))
}

fn link(v: &Value) -> Result<(), Value> {
    if v.is_null() {
        return Ok(());
    }
    let Some(o) = v.as_object() else {
        return Err(json!({ "_schema": ["Invalid input type."] }));
    };
    let mut errors = Map::new();
    for k in o.keys() {
        if !["path", "type", "etag"].contains(&k.as_str()) {
            errors.insert(k.clone(), msg("Unknown field."));
        }
    }
    match o.get("path") {
        None => {
            errors.insert("path".into(), msg("Missing data for required field."));
        }
        Some(p) => {
            if let Err(e) = string(p) {
                errors.insert("path".into(), e);
            }
        }
    }
    match o.get("type").map(Value::as_str) {
        None => {
            errors.insert("type".into(), msg("Missing data for required field."));
        }
        Some(Some("s3")) => {}
        Some(_) => {
            errors.insert("type".into(), msg("Type must be one of: s3."));
        }
    }
    if let Some(Err(e)) = o.get("etag").map(string) {
        errors.insert("etag".into(), e);
    }
    nested(errors)
}

fn nested(errors: Map<String, Value>) -> Result<(), Value> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Value::Object(errors))
    }
}

/// A list of `{key, value}` strings; errors are keyed by item index.
fn template_dictionary(v: &Value) -> Result<(), Value> {
    let Some(items) = v.as_array() else {
        return Err(msg("Not a valid list."));
    };
    let mut errors = Map::new();
    for (i, item) in items.iter().enumerate() {
        let Some(o) = item.as_object() else {
            errors.insert(i.to_string(), json!({ "_schema": ["Invalid input type."] }));
            continue;
        };
        let mut e = Map::new();
        for k in o.keys().filter(|k| !["key", "value"].contains(&k.as_str())) {
            e.insert(k.clone(), msg("Unknown field."));
        }
        for k in ["key", "value"] {
            match o.get(k) {
                None => {
                    e.insert(k.into(), msg("Missing data for required field."));
                }
                Some(v) => {
                    if let Err(m) = string(v) {
                        e.insert(k.into(), m);
                    }
                }
            }
        }
        if !e.is_empty() {
            errors.insert(i.to_string(), Value::Object(e));
        }
    }
    nested(errors)
}

/// A map of strings; a bad value's error is `{key: {"value": [...]}}`.
fn metadata_map(v: &Value) -> Result<(), Value> {
    let Some(o) = v.as_object() else {
        return Err(msg("Not a valid mapping type."));
    };
    let mut errors = Map::new();
    for (k, v) in o {
        if let Err(e) = string(v) {
            errors.insert(k.clone(), json!({ "value": e }));
        }
    }
    nested(errors)
}

/// One operation: `set` (`value` defaults to "") or `remove` of `key`.
fn metadata_patch(v: &Value) -> Result<(), Value> {
    let Some(o) = v.as_object() else {
        return Err(json!({ "_schema": ["Invalid input type."] }));
    };
    let mut errors = Map::new();
    for k in o.keys() {
        if !["operation", "key", "value"].contains(&k.as_str()) {
            errors.insert(k.clone(), msg("Unknown field."));
        }
    }
    match o.get("operation") {
        None => {
            errors.insert("operation".into(), msg("Missing data for required field."));
        }
        Some(op) => {
            if let Err(e) = one_of(op, &["set", "remove"]) {
                errors.insert("operation".into(), e);
            }
        }
    }
    match o.get("key") {
        None => {
            errors.insert("key".into(), msg("Missing data for required field."));
        }
        Some(k) => {
            if let Err(e) = string(k) {
                errors.insert("key".into(), e);
            }
        }
    }
    if let Some(Err(e)) = o.get("value").map(string) {
        errors.insert("value".into(), e);
    }
    nested(errors)
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

fn integer(v: &Value) -> Result<(), Value> {
    (v.is_u64() || v.is_i64())
        .then_some(())
        .ok_or_else(|| msg("Not a valid integer."))
}

fn list(v: &Value) -> Result<(), Value> {
    v.is_array()
        .then_some(())
        .ok_or_else(|| msg("Not a valid list."))
}

/// Validates a job POST body (the input fields of IMS's job schema).
pub fn job(body: &Value) -> Result<Map<String, Value>, Problem> {
    const JOB: &[Field] = &[
        req("job_type", |v| one_of(v, &["create", "customize"])),
        req("artifact_id", non_empty_string),
        req("public_key_id", non_empty_string),
        req("image_root_archive_name", non_empty_string),
        opt("enable_debug", boolean),
        opt("build_env_size", integer),
        opt("job_mem_size", integer),
        opt("kernel_file_name", string),
        opt("initrd_file_name", string),
        opt("kernel_parameters_file_name", string),
        opt("ssh_containers", list),
        opt("require_dkms", boolean),
        opt("arch", arch),
    ];
    let mut j = check(body, JOB)?;
    for field in ["enable_debug", "require_dkms"] {
        if let Some(b) = j.get(field).and_then(as_boolean) {
            j.insert(field.into(), json!(b));
        }
    }
    Ok(j)
}

fn check(body: &Value, fields: &[Field]) -> Result<Map<String, Value>, Problem> {
    let Some(obj) = body.as_object().filter(|o| !o.is_empty()) else {
        return Err(Problem::bad_request(crate::problem::MISSING_INPUT));
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
                if let Err(e) = (f.check)(v) {
                    errors.insert(f.name.into(), e);
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
    normalise(&mut rec);
    Ok(rec)
}

/// Validates a PATCH body of a live record.
pub fn patch(kind: Kind, body: &Value) -> Result<Map<String, Value>, Problem> {
    let mut p = check(body, patch_fields(kind))?;
    normalise(&mut p);
    if let Some(Value::Object(m)) = p.get_mut("metadata")
        && m.get("operation").and_then(Value::as_str) == Some("set")
    {
        // Real IMS stores a `set` without a value as "".
        m.entry("value").or_insert(json!(""));
    }
    Ok(p)
}

/// What marshmallow's load does to valid input: fills a link's `etag` and
/// turns `require_dkms` into the bool it stands for.
fn normalise(rec: &mut Map<String, Value>) {
    if let Some(Value::Object(link)) = rec.get_mut("link") {
        link.entry("etag").or_insert(json!(""));
    }
    if let Some(b) = rec.get("require_dkms").and_then(as_boolean) {
        rec.insert("require_dkms".into(), json!(b));
    }
}
