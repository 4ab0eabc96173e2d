//! Expressions in `with`, `when` and `[archive]`, evaluated with minijinja.
//!
//! A string that is exactly one `{{ expr }}` evaluates to the expression's
//! value with its type (list, bool, object...); any other string is rendered
//! as a template and stays a string. `when` is a bare expression.
use minijinja::{Environment, UndefinedBehavior, Value};
use std::collections::HashSet;
use std::sync::OnceLock;

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A typo in a reference must fail, not render as empty.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Bounded work per evaluation: a hostile expression stops, it does not spin.
        env.set_fuel(Some(FUEL));
        env
    })
}

/// Instructions one evaluation may run (stock expressions use a few dozen).
const FUEL: u64 = 100_000;

/// If `text` is one `{{ ... }}` and nothing else, the inner expression.
fn sole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner)
}

/// Dotted variable paths a template string or `when` expression references,
/// e.g. `params.include_bos`, `steps.fetch.output.images`.
/// Globals such as `range` and `namespace` are not references.
pub fn references(text: &str, is_expression: bool) -> Result<HashSet<String>, String> {
    let env = env();
    let expr = if is_expression {
        Some(text)
    } else {
        sole_expression(text)
    };
    // Expressions only: statements (`{% for %}`, `{% set %}`) would let a
    // workflow loop and build strings without bound.
    if !is_expression && (text.contains("{%") || text.contains("{#")) {
        return Err("templates take `{{ expression }}` only, not `{% ... %}` statements or `{# #}` comments".into());
    }
    let mut refs = match expr {
        Some(e) => env
            .compile_expression(e)
            .map_err(describe)?
            .undeclared_variables(true),
        None => env
            .template_from_str(text)
            .map_err(describe)?
            .undeclared_variables(true),
    };
    let globals: HashSet<&str> = env.globals().map(|(name, _)| name).collect();
    refs.retain(|r| !globals.contains(r.split('.').next().unwrap_or_default()));
    Ok(refs)
}

/// Evaluates a `with` value against the context.
pub fn render(value: &toml::Value, ctx: &Value) -> Result<serde_json::Value, String> {
    Ok(match value {
        toml::Value::String(s) => render_str(s, ctx)?,
        toml::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|v| render(v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), render(v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(d) => d.to_string().into(),
    })
}

/// Evaluates one string: typed if it is a sole expression, else a rendered string.
pub fn render_str(text: &str, ctx: &Value) -> Result<serde_json::Value, String> {
    let env = env();
    if let Some(e) = sole_expression(text) {
        let value = env
            .compile_expression(e)
            .and_then(|x| x.eval(ctx))
            .map_err(describe)?;
        serde_json::to_value(&value).map_err(|e| e.to_string())
    } else if text.contains("{{") {
        Ok(env.render_str(text, ctx).map_err(describe)?.into())
    } else {
        Ok(text.into())
    }
}

/// Evaluates a `when` expression to a truth value.
pub fn truthy(expr: &str, ctx: &Value) -> Result<bool, String> {
    let value = env()
        .compile_expression(expr)
        .and_then(|x| x.eval(ctx))
        .map_err(describe)?;
    Ok(value.is_true())
}

fn describe(e: minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}
