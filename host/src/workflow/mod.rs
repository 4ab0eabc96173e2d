//! Workflow files: parsing, validation (with file:line errors) and the
//! validated model the engine runs.
pub mod expr;
mod model;

/// A step's grants, as the plan records them.
pub use crate::plan::Grants;
pub use model::ParamType;

use crate::backends::SiteServices;
use crate::plugin::PluginRef;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// Per-step limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory per instance, bytes.
    pub memory: u64,
    /// Wall clock per call.
    pub timeout: Duration,
    /// Output JSON plus effects, bytes.
    pub max_output: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        memory: 256 << 20,
        timeout: Duration::from_secs(60),
        max_output: 64 << 20,
    };
}

/// One problem in a workflow file, at a line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// All problems found in a workflow file.
#[derive(Debug, thiserror::Error)]
pub struct WorkflowError(pub Vec<Diagnostic>);

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub ty: ParamType,
    pub default: Option<serde_json::Value>,
    pub description: String,
}

/// Templates of the `[archive]` table.
#[derive(Debug, Clone, Default)]
pub struct ArchiveSpec {
    pub output_dir: Option<String>,
    pub name: Option<String>,
    pub format: Option<String>,
    pub input: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StepSpec {
    pub id: String,
    pub plugin: PluginRef,
    pub needs: Vec<String>,
    pub when: Option<String>,
    pub with: BTreeMap<String, toml::Value>,
    pub grants: Grants,
    pub limits: Limits,
    pub retries: u32,
    /// Position of the step's `plugin` key, for errors found later.
    pub plugin_at: (usize, usize),
}

#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    /// File path, or `stock:<name>` for an embedded workflow.
    pub file: String,
    /// sha256 (hex) of the file's text.
    pub sha256: String,
    pub params: Vec<Param>,
    pub archive: ArchiveSpec,
    /// In file order, which is also the order effects are applied in.
    pub steps: Vec<StepSpec>,
    pub gates: Vec<GateSpec>,
}

/// An approval gate of the workflow (see `model::Gate`).
#[derive(Debug, Clone)]
pub struct GateSpec {
    pub name: String,
    pub description: String,
    pub before: GateAt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateAt {
    /// Before the first effect of this step.
    Step(String),
    /// Before the `phase` effect of this name.
    Phase(String),
}

/// Resolves a workflow argument: an existing file path, else a stock name.
/// Its grants may name the stock services only (see `load_with`).
pub fn load(name_or_path: &str) -> Result<Workflow, WorkflowError> {
    load_with(name_or_path, &SiteServices::default())
}

/// `load`, where grants may also name the site's `services`.
pub fn load_with(name_or_path: &str, services: &SiteServices) -> Result<Workflow, WorkflowError> {
    if Path::new(name_or_path).exists() {
        return load_file(name_or_path, services);
    }
    load_stock(name_or_path, services)
}

/// The workflow a plan names by its `source`: `stock:<name>` is the
/// embedded one (never a file of that name), anything else the file.
pub fn load_source(source: &str, services: &SiteServices) -> Result<Workflow, WorkflowError> {
    match source.strip_prefix("stock:") {
        Some(name) => load_stock(name, services),
        None => load_file(source, services),
    }
}

fn load_file(file: &str, services: &SiteServices) -> Result<Workflow, WorkflowError> {
    let path = Path::new(file);
    let text =
        crate::read::read_text_capped(path, MAX_WORKFLOW_BYTES, "workflow file").map_err(|e| {
            WorkflowError(vec![Diagnostic {
                file: file.into(),
                line: 1,
                column: 1,
                message: e.to_string(),
            }])
        })?;
    // Absolute, so that a plan names its plugin files wherever it is applied.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
    parse_with(file, &text, &base, services)
}

/// How a plan names a workflow: `stock:<name>`, or the file's absolute path,
/// so that `apply` from another directory checks the same file.
pub fn plan_source(wf: &Workflow) -> String {
    if wf.file.starts_with("stock:") {
        return wf.file.clone();
    }
    std::path::absolute(&wf.file).map_or_else(|_| wf.file.clone(), |p| p.display().to_string())
}

fn load_stock(wanted: &str, services: &SiteServices) -> Result<Workflow, WorkflowError> {
    match crate::stock::STOCK_WORKFLOWS
        .iter()
        .find(|(n, _)| *n == wanted)
    {
        Some((name, text)) => parse_with(&format!("stock:{name}"), text, Path::new("."), services),
        None => Err(WorkflowError(vec![Diagnostic {
            file: wanted.into(),
            line: 1,
            column: 1,
            message: format!(
                "no such workflow file, and no stock workflow named `{wanted}` (see `imsflow workflows list`)"
            ),
        }])),
    }
}

/// Largest workflow file read: stock ones are a few KiB.
pub const MAX_WORKFLOW_BYTES: u64 = 1 << 20;
/// Most steps in a workflow, which keeps validation and scheduling cheap.
pub const MAX_STEPS: usize = 1000;
/// Largest `limits.memory_mib`: a wasm32 memory cannot exceed 4 GiB.
const MAX_MEMORY_MIB: u64 = 4096;
/// Most retries of a step (backoff doubles up to 12.8 s between tries).
const MAX_RETRIES: u32 = 10;
/// Largest `limits.max_output_mib`.
const MAX_OUTPUT_MIB: u64 = 1024;

/// Parses and validates a workflow. `base` resolves relative plugin paths.
/// Its grants may name the stock services only (see `parse_with`).
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Workflow, WorkflowError> {
    parse_with(file, text, base, &SiteServices::default())
}

/// `parse`, where grants may also name the site's `services`.
pub fn parse_with(
    file: &str,
    text: &str,
    base: &Path,
    services: &SiteServices,
) -> Result<Workflow, WorkflowError> {
    let mut v = Validator {
        file,
        lines: LineIndex::new(text),
        errors: Vec::new(),
        services,
    };
    if text.len() as u64 > MAX_WORKFLOW_BYTES {
        v.error(
            0,
            format!(
                "the workflow is {} bytes, over the limit of {MAX_WORKFLOW_BYTES}",
                text.len()
            ),
        );
        return Err(WorkflowError(v.errors));
    }
    let raw: model::File = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let at = e.span().map(|s| s.start).unwrap_or(0);
            v.error(at, e.message().trim().to_string());
            return Err(WorkflowError(v.errors));
        }
    };
    let mut workflow = v.workflow(raw, base);
    workflow.sha256 = crate::plugin::sha256_hex(text.as_bytes());
    v.errors.sort_by_key(|d| (d.line, d.column));
    if v.errors.is_empty() {
        Ok(workflow)
    } else {
        Err(WorkflowError(v.errors))
    }
}

struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line and column of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset);
        (line, offset - self.starts[line - 1] + 1)
    }
}

struct Validator<'a> {
    file: &'a str,
    lines: LineIndex,
    errors: Vec<Diagnostic>,
    /// The services a grant may name.
    services: &'a SiteServices,
}

impl Validator<'_> {
    fn error(&mut self, offset: usize, message: String) {
        let (line, column) = self.lines.position(offset);
        self.errors.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message,
        });
    }

    fn workflow(&mut self, raw: model::File, base: &Path) -> Workflow {
        if *raw.version.get_ref() != 1 {
            self.error(
                raw.version.span().start,
                format!(
                    "unsupported workflow version {}; this imsflow reads version 1",
                    raw.version.get_ref()
                ),
            );
        }
        if let Some(extra) = raw.steps.get(MAX_STEPS) {
            self.error(
                extra.span().start,
                format!(
                    "the workflow has {} steps, over the limit of {MAX_STEPS}",
                    raw.steps.len()
                ),
            );
            return Workflow {
                name: raw.name.into_inner(),
                description: raw.description,
                file: self.file.to_string(),
                sha256: String::new(),
                params: Vec::new(),
                archive: ArchiveSpec::default(),
                steps: Vec::new(),
                gates: Vec::new(),
            };
        }
        let params = self.params(&raw.params);
        let param_names: BTreeSet<&str> = params.iter().map(|p| p.name.as_str()).collect();
        let archive = raw
            .archive
            .map(|a| self.archive(a, &param_names))
            .unwrap_or_default();
        let steps = self.steps(raw.steps, base);
        self.check_graph(&steps);
        self.check_references(&steps, &param_names);
        let gates = self.gates(&raw.gates, &steps);
        Workflow {
            name: raw.name.into_inner(),
            description: raw.description,
            file: self.file.to_string(),
            sha256: String::new(),
            params,
            archive,
            steps: steps.into_iter().map(|(spec, _)| spec).collect(),
            gates,
        }
    }

    fn gates(
        &mut self,
        raw: &[Spanned<model::Gate>],
        steps: &[(StepSpec, Spanned<model::Step>)],
    ) -> Vec<GateSpec> {
        let mut out: Vec<GateSpec> = Vec::new();
        for gate in raw {
            let g = gate.get_ref();
            let name = g.name.get_ref();
            if !valid_id(name) {
                self.error(
                    g.name.span().start,
                    format!("gate name `{name}`: use letters, digits, `-` and `_`"),
                );
            } else if out.iter().any(|o| &o.name == name) {
                self.error(
                    g.name.span().start,
                    format!("gate `{name}` is declared twice"),
                );
            }
            let before = match (&g.before_step, &g.before_phase) {
                (Some(step), None) => {
                    if !steps.iter().any(|(s, _)| &s.id == step.get_ref()) {
                        self.error(
                            step.span().start,
                            format!(
                                "gate `{name}`: before_step names unknown step `{}`",
                                step.get_ref()
                            ),
                        );
                    }
                    GateAt::Step(step.get_ref().clone())
                }
                (None, Some(phase)) => GateAt::Phase(phase.get_ref().clone()),
                _ => {
                    self.error(
                        gate.span().start,
                        format!("gate `{name}`: give exactly one of before_step and before_phase"),
                    );
                    continue;
                }
            };
            out.push(GateSpec {
                name: name.clone(),
                description: g.description.clone(),
                before,
            });
        }
        out
    }

    fn params(&mut self, raw: &BTreeMap<String, Spanned<model::Param>>) -> Vec<Param> {
        let mut out = Vec::new();
        for (name, p) in raw {
            let default = p.get_ref().default.as_ref().and_then(|d| {
                match param_value(p.get_ref().ty, d.get_ref()) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.error(d.span().start, format!("param `{name}`: default {e}"));
                        None
                    }
                }
            });
            out.push(Param {
                name: name.clone(),
                ty: p.get_ref().ty,
                default,
                description: p.get_ref().description.clone(),
            });
        }
        out
    }

    fn archive(&mut self, raw: Spanned<model::Archive>, params: &BTreeSet<&str>) -> ArchiveSpec {
        let raw = raw.into_inner();
        let mut take = |field: Option<Spanned<String>>| {
            let field = field?;
            self.check_template(
                field.get_ref(),
                field.span().start,
                false,
                params,
                None,
                "archive",
            );
            Some(field.into_inner())
        };
        ArchiveSpec {
            output_dir: take(raw.output_dir),
            name: take(raw.name),
            format: take(raw.format),
            input: take(raw.input),
        }
    }

    /// Steps with the raw spans that later checks point at.
    fn steps(
        &mut self,
        raw: Vec<Spanned<model::Step>>,
        base: &Path,
    ) -> Vec<(StepSpec, Spanned<model::Step>)> {
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        for step in raw {
            let s = step.get_ref();
            let id = s.id.get_ref().clone();
            if !valid_id(&id) {
                self.error(
                    s.id.span().start,
                    format!(
                        "step id `{id}` must be letters, digits, `_` or `-`, starting with a letter"
                    ),
                );
            }
            if seen.insert(id.clone(), ()).is_some() {
                self.error(s.id.span().start, format!("duplicate step id `{id}`"));
            }
            let plugin = PluginRef::parse(
                s.plugin.get_ref(),
                s.sha256.as_ref().map(|h| h.get_ref().as_str()),
                base,
            );
            match &plugin {
                PluginRef::Stock(name) if !crate::plugin::is_stock(name) => self.error(
                    s.plugin.span().start,
                    format!("step `{id}`: unknown plugin `{name}`; stock plugins are: {}", crate::plugin::stock_names().collect::<Vec<_>>().join(", ")),
                ),
                PluginRef::File { path, .. } if !path.is_file() => self.error(
                    s.plugin.span().start,
                    format!(
                        "step `{id}`: plugin file `{}` does not exist (paths are relative to the workflow file)",
                        s.plugin.get_ref()
                    ),
                ),
                PluginRef::Stock(_) if s.sha256.is_some() => self.error(
                    s.sha256.as_ref().unwrap().span().start,
                    format!("step `{id}`: `sha256` pins a plugin file; stock plugins are pinned by the binary"),
                ),
                _ => {}
            }
            if let Some(h) = &s.sha256
                && !(h.get_ref().len() == 64 && h.get_ref().chars().all(|c| c.is_ascii_hexdigit()))
            {
                self.error(
                    h.span().start,
                    format!("step `{id}`: sha256 must be 64 hex digits"),
                );
            }
            let mut limits = Limits::DEFAULT;
            if let Some(t) = &s.timeout {
                match humantime::parse_duration(t.get_ref()) {
                    Ok(d) if d > Duration::ZERO => limits.timeout = d,
                    _ => self.error(
                        t.span().start,
                        format!(
                            "step `{id}`: timeout `{}` is not a duration like \"90s\" or \"5m\"",
                            t.get_ref()
                        ),
                    ),
                }
            }
            for (value, max, name, field) in [
                (
                    &s.limits.memory_mib,
                    MAX_MEMORY_MIB,
                    "memory_mib",
                    &mut limits.memory,
                ),
                (
                    &s.limits.max_output_mib,
                    MAX_OUTPUT_MIB,
                    "max_output_mib",
                    &mut limits.max_output,
                ),
            ] {
                let Some(m) = value else { continue };
                if (1..=max).contains(m.get_ref()) {
                    *field = m.get_ref() << 20;
                } else {
                    self.error(
                        m.span().start,
                        format!(
                            "step `{id}`: limits.{name} must be between 1 and {max}, not {}",
                            m.get_ref()
                        ),
                    );
                }
            }
            let retries = match &s.retries {
                Some(r) if *r.get_ref() > MAX_RETRIES => {
                    self.error(
                        r.span().start,
                        format!(
                            "step `{id}`: retries must be at most {MAX_RETRIES}, not {}",
                            r.get_ref()
                        ),
                    );
                    0
                }
                Some(r) => *r.get_ref(),
                None => 0,
            };
            let grants = self.grants(&id, &s.grants);
            let plugin_at = self.lines.position(s.plugin.span().start);
            out.push((
                StepSpec {
                    id,
                    plugin,
                    needs: s.needs.iter().map(|n| n.get_ref().clone()).collect(),
                    when: s.when.as_ref().map(|w| w.get_ref().clone()),
                    with: s
                        .with
                        .iter()
                        .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                        .collect(),
                    grants,
                    limits,
                    retries,
                    plugin_at,
                },
                step,
            ));
        }
        out
    }

    fn grants(&mut self, id: &str, raw: &model::Grants) -> Grants {
        for s in &raw.services {
            if !self.services.is_known(s.get_ref()) {
                let known = self.services.known();
                self.error(
                    s.span().start,
                    format!(
                        "step `{id}`: unknown service `{}` in grants; known services: {}",
                        s.get_ref(),
                        known.join(", ")
                    ),
                );
            }
        }
        for e in &raw.effects {
            if !crate::plan::effect::KINDS.contains(&e.get_ref().as_str()) {
                self.error(
                    e.span().start,
                    format!(
                        "step `{id}`: unknown effect kind `{}` in grants; kinds: {}",
                        e.get_ref(),
                        crate::plan::effect::KINDS.join(", ")
                    ),
                );
            }
        }
        Grants {
            services: raw.services.iter().map(|s| s.get_ref().clone()).collect(),
            buckets: raw.buckets.iter().map(|b| b.get_ref().clone()).collect(),
            archive: raw.archive,
            effects: raw.effects.iter().map(|e| e.get_ref().clone()).collect(),
        }
    }

    /// Unknown `needs` and cycles.
    fn check_graph(&mut self, steps: &[(StepSpec, Spanned<model::Step>)]) {
        let ids: BTreeSet<&str> = steps.iter().map(|(s, _)| s.id.as_str()).collect();
        for (spec, raw) in steps {
            for need in &raw.get_ref().needs {
                if need.get_ref() == &spec.id {
                    self.error(
                        need.span().start,
                        format!("step `{}` needs itself", spec.id),
                    );
                } else if !ids.contains(need.get_ref().as_str()) {
                    self.error(
                        need.span().start,
                        format!("step `{}` needs unknown step `{}`", spec.id, need.get_ref()),
                    );
                }
            }
        }
        let specs: Vec<&StepSpec> = steps.iter().map(|(s, _)| s).collect();
        if let Some(cycle) = find_cycle(&specs) {
            let at = steps
                .iter()
                .find(|(s, _)| s.id == cycle[0])
                .map_or(0, |(_, raw)| raw.get_ref().id.span().start);
            self.error(at, format!("steps form a cycle: {}", cycle.join(" -> ")));
        }
    }

    /// Every expression's variables must be params, run facts, or outputs of steps it needs.
    fn check_references(
        &mut self,
        steps: &[(StepSpec, Spanned<model::Step>)],
        params: &BTreeSet<&str>,
    ) {
        let specs: Vec<&StepSpec> = steps.iter().map(|(s, _)| s).collect();
        let index = index_of(&specs);
        for (spec, raw) in steps {
            let ancestors = ancestors(&specs, &index, &spec.id);
            let scope = Some((spec.id.as_str(), &ancestors));
            if let Some(w) = &raw.get_ref().when {
                self.check_template(w.get_ref(), w.span().start, true, params, scope, "when");
            }
            for (key, value) in &raw.get_ref().with {
                let mut strings = Vec::new();
                collect_strings(value.get_ref(), &mut strings);
                for s in strings {
                    self.check_template(
                        s,
                        value.span().start,
                        false,
                        params,
                        scope,
                        &format!("with.{key}"),
                    );
                }
            }
        }
    }

    fn check_template(
        &mut self,
        text: &str,
        at: usize,
        is_expression: bool,
        params: &BTreeSet<&str>,
        step: Option<(&str, &BTreeSet<String>)>,
        what: &str,
    ) {
        let refs = match expr::references(text, is_expression) {
            Ok(r) => r,
            Err(e) => return self.error(at, format!("{what}: invalid expression `{text}`: {e}")),
        };
        let mut refs: Vec<_> = refs.into_iter().collect();
        refs.sort();
        for r in refs {
            let mut parts = r.split('.');
            let root = parts.next().unwrap_or_default();
            let name = parts.next();
            let problem = match (root, name, step) {
                ("run", _, _) => None,
                ("params", Some(p), _) if params.contains(p) => None,
                ("params", Some(p), _) => Some(format!("unknown param `{p}`")),
                ("steps", Some(s), Some((_, ancestors))) if ancestors.contains(s) => None,
                ("steps", Some(s), Some((me, _))) => Some(format!(
                    "step `{me}` uses `steps.{s}` but does not need it (add \"{s}\" to its `needs`)"
                )),
                ("steps", _, None) => Some("step outputs are not available here".into()),
                _ => Some(format!(
                    "unknown variable `{r}` (use `params.*`, `steps.<id>.output` or `run.*`)"
                )),
            };
            if let Some(p) = problem {
                self.error(at, format!("{what}: {p}"));
            }
        }
    }
}

fn valid_id(id: &str) -> bool {
    id.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn collect_strings<'v>(value: &'v toml::Value, out: &mut Vec<&'v str>) {
    match value {
        toml::Value::String(s) => out.push(s),
        toml::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        toml::Value::Table(t) => t.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Step id -> position, for graph walks that stay linear.
fn index_of<'a>(steps: &[&'a StepSpec]) -> HashMap<&'a str, usize> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect()
}

/// All steps `id` transitively needs (an iterative walk: no recursion).
fn ancestors(steps: &[&StepSpec], index: &HashMap<&str, usize>, id: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<usize> = index.get(id).copied().into_iter().collect();
    while let Some(cur) = stack.pop() {
        for n in &steps[cur].needs {
            if let Some(&j) = index.get(n.as_str())
                && seen.insert(n.clone())
            {
                stack.push(j);
            }
        }
    }
    seen
}

/// A dependency cycle, as the ids along it (first repeated at the end).
/// Iterative depth-first search, linear in steps and needs, so that a
/// hostile 100,000-step chain neither takes minutes nor overflows the stack.
fn find_cycle(steps: &[&StepSpec]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let index = index_of(steps);
    let mut marks = vec![Mark::New; steps.len()];
    for root in 0..steps.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // (step, next need to look at); the stack is the current path.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::Active;
        while let Some(&mut (i, ref mut next)) = path.last_mut() {
            let Some(need) = steps[i].needs.get(*next) else {
                marks[i] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            let Some(&j) = index.get(need.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::Active => {
                    let from = path.iter().position(|&(p, _)| p == j).unwrap_or(0);
                    let mut ids: Vec<String> = path[from..]
                        .iter()
                        .map(|&(k, _)| steps[k].id.clone())
                        .collect();
                    ids.push(steps[j].id.clone());
                    return Some(ids);
                }
                Mark::New => {
                    marks[j] = Mark::Active;
                    path.push((j, 0));
                }
                Mark::Done => {}
            }
        }
    }
    None
}

/// Converts a TOML value to a param value of the declared type.
fn param_value(ty: ParamType, v: &toml::Value) -> Result<serde_json::Value, String> {
    match (ty, v) {
        (ParamType::String, toml::Value::String(s)) => Ok(s.clone().into()),
        (ParamType::Bool, toml::Value::Boolean(b)) => Ok((*b).into()),
        (ParamType::Integer, toml::Value::Integer(i)) => Ok((*i).into()),
        (ParamType::List, toml::Value::Array(items)) => items
            .iter()
            .map(|i| expr::render(i, &minijinja::Value::UNDEFINED))
            .collect::<Result<Vec<_>, _>>()
            .map(Into::into),
        _ => Err(format!(
            "must be of type {}",
            serde_json::to_value(ty).unwrap().as_str().unwrap()
        )),
    }
}

/// Parses a `--param` value given on the command line.
pub fn param_from_cli(param: &Param, text: &str) -> Result<serde_json::Value, String> {
    match param.ty {
        ParamType::String => Ok(text.into()),
        ParamType::Bool => match text {
            "true" | "yes" | "1" => Ok(true.into()),
            "false" | "no" | "0" => Ok(false.into()),
            _ => Err(format!(
                "param `{}` is a bool: use true or false, not `{text}`",
                param.name
            )),
        },
        ParamType::Integer => text
            .parse::<i64>()
            .map(Into::into)
            .map_err(|_| format!("param `{}` is an integer, not `{text}`", param.name)),
        ParamType::List => Ok(text
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().to_string())
            .collect::<Vec<_>>()
            .into()),
    }
}

impl Workflow {
    /// Params from defaults and `name=value` overrides; all must be known and set.
    pub fn resolve_params(
        &self,
        overrides: &[(String, String)],
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let mut values = serde_json::Map::new();
        for (name, text) in overrides {
            let param = self
                .params
                .iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| {
                    let known: Vec<_> = self.params.iter().map(|p| p.name.as_str()).collect();
                    // The caller's error names the workflow.
                    format!("no param `{name}` (params: {})", known.join(", "))
                })?;
            values.insert(name.clone(), param_from_cli(param, text)?);
        }
        for p in &self.params {
            if !values.contains_key(&p.name) {
                let default = p.default.clone().ok_or_else(|| {
                    format!(
                        "param `{}` has no default; give it with --param {}=VALUE",
                        p.name, p.name
                    )
                })?;
                values.insert(p.name.clone(), default);
            }
        }
        Ok(values)
    }
}
