//! The modules of this library form a DAG: a test reads every `.rs` file
//! under `host/src` (the binary's `main.rs` and `cli/` excepted: nothing in
//! the library can use them), collects the `crate::<module>` paths each
//! top-level module uses (a folder such as `apply/` or `k8s/` is one node),
//! from `use` lines and groups (`use crate::{a, b::c}`), inline paths
//! (`crate::x::y()`) and `super::` paths that leave the module, and fails
//! naming a cycle if there is one. A cycle makes every module on it depend on
//! all the others, so none can be understood, tested or split off alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Where a module uses another: the file (relative to `src/`) and line.
type Edges = BTreeMap<String, BTreeMap<String, String>>;

/// `text` with comments, string and character literals blanked out (kept
/// as spaces, newlines kept so that line numbers stay), so that a path in a
/// doc comment or a message is not taken for a use.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"..." or r#"..."#, closed by `"` and as many `#`.
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            j += 1;
            while j < chars.len() {
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                blank(&mut out, chars[j]);
                j += 1;
            }
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&c) = chars.get(i) {
                    blank(&mut out, c);
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), not a lifetime.
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => i = end + 1,
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A token of cleaned code: an identifier, `::`, or one punctuation char.
fn tokens(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut line = 1;
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((chars[start..i].iter().collect(), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(("::".into(), line));
            i += 2;
        } else {
            out.push((c.to_string(), line));
            i += 1;
        }
    }
    out
}

/// The top-level modules that the file at module path `module` (e.g.
/// `["apply", "ims"]`, or `["backends"]`) uses, each with the line of its
/// first use. Inline `mod x { ... }` blocks are followed, so that a test
/// module's `super::` stays in its file.
fn uses(module: &[String], code: &str) -> BTreeMap<String, usize> {
    let toks = tokens(code);
    let tok = |i: usize| toks.get(i).map(|(t, _)| t.as_str());
    let mut found = BTreeMap::new();
    let mut add = |name: &str, line: usize| {
        found.entry(name.to_string()).or_insert(line);
    };
    // Inline modules open here: (name, brace depth inside it).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let (t, line) = (&toks[i].0, toks[i].1);
        match t.as_str() {
            "{" => depth += 1,
            "}" => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth -= 1;
            }
            "mod" if tok(i + 2) == Some("{") => {
                inline.push((toks[i + 1].0.clone(), depth + 1));
            }
            "crate" | "super"
                if tok(i + 1) == Some("::") && tok(i.wrapping_sub(1)) != Some("::") =>
            {
                // Resolve to an absolute path from the crate root.
                let mut path: Vec<String> = module.to_vec();
                path.extend(inline.iter().map(|(n, _)| n.clone()));
                let mut j = i;
                if t == "crate" {
                    path.clear();
                    j += 2;
                } else {
                    while tok(j) == Some("super") && tok(j + 1) == Some("::") {
                        path.pop();
                        j += 2;
                    }
                }
                if let Some(first) = path.first() {
                    add(first, line);
                } else if tok(j) == Some("{") {
                    // A group: the first segment of each item at its top level.
                    let mut level = 0;
                    let mut item_start = true;
                    j += 1;
                    while let Some(t) = tok(j) {
                        match t {
                            "{" => level += 1,
                            "}" if level == 0 => break,
                            "}" => level -= 1,
                            "," if level == 0 => item_start = true,
                            t if item_start && level == 0 => {
                                add(t, toks[j].1);
                                item_start = false;
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                } else if let Some(name) = tok(j) {
                    add(name, line);
                }
            }
            _ => {}
        }
        i += 1;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("host/src is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/`: `apply/ims.rs` is
/// `["apply", "ims"]`, `apply/mod.rs` and `apply.rs` are `["apply"]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut path: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    path
}

/// Who uses whom among the library's top-level modules, with where.
fn graph(src: &Path) -> Edges {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(src).unwrap().to_path_buf();
        let path = module_path(&relative);
        if matches!(path[0].as_str(), "main" | "lib" | "cli") {
            continue;
        }
        modules.push((relative, path));
    }
    let nodes: BTreeSet<String> = modules.iter().map(|(_, p)| p[0].clone()).collect();
    let mut edges = Edges::new();
    for (relative, path) in &modules {
        let text = fs::read_to_string(src.join(relative)).unwrap();
        let from = &path[0];
        let out = edges.entry(from.clone()).or_default();
        for (to, line) in uses(path, &code_only(&text)) {
            if &to != from && nodes.contains(&to) {
                out.entry(to)
                    .or_insert_with(|| format!("{}:{line}", relative.display()));
            }
        }
    }
    edges
}

/// A cycle in `edges`, as the modules on it with the first one repeated.
fn find_cycle(edges: &Edges) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &Edges,
        done: &mut BTreeSet<String>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flat_map(|m| m.keys()) {
            if let Some(cycle) = visit(next, edges, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut done, &mut Vec::new()))
}

/// `a -> b (a.rs:3) -> a (b/mod.rs:7)`: each step with where it is used.
fn describe(cycle: &[String], edges: &Edges) -> String {
    let mut out = cycle[0].clone();
    for pair in cycle.windows(2) {
        out.push_str(&format!(" -> {} ({})", pair[1], edges[&pair[0]][&pair[1]]));
    }
    out
}

#[test]
fn host_src_has_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(
        edges.get("apply").is_some_and(|m| m.contains_key("plan")),
        "the graph misses apply -> plan: {edges:?}"
    );
    // Invariants of the code map (ARCHITECTURE.md).
    let uses = |from: &str| edges.get(from).cloned().unwrap_or_default();
    assert!(
        uses("net").is_empty(),
        "net.rs is a leaf, but uses {:?}",
        uses("net")
    );
    assert!(
        !uses("workflow").contains_key("sandbox"),
        "workflow/ holds no Wasm, but uses sandbox ({})",
        uses("workflow")["sandbox"]
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "import cycle in host/src: {}\nmove what both sides need into a module that neither imports (see ARCHITECTURE.md, code map)",
            describe(&cycle, &edges)
        );
    }
}

#[test]
fn uses_are_read_from_groups_inline_paths_and_super_but_not_comments_or_strings() {
    let code = code_only(
        "use crate::{a, b::{c, d}, e::f as g};\n\
         // crate::commented\n\
         /* crate::blocked /* nested */ crate::still */\n\
         fn x<'l>() { let _ = \"crate::quoted\"; let _ = r#\"crate::raw\"#; let _ = '\"';\n\
         crate::h::i(); let _ = crate :: j :: K; }\n\
         mod tests { use super::*; use super::super::k; fn t() { super::m(); } }\n\
         fn y() { super::n::o(); }\n",
    );
    let found = uses(&["dir".into(), "file".into()], &code);
    let names: Vec<&str> = found.keys().map(String::as_str).collect();
    // `super::*` and `super::m` in `tests` stay in `dir::file`;
    // `super::super::k` from `dir::file::tests` is `dir::k`: still `dir`;
    // `super::n` from `dir::file` is `dir::n`.
    assert_eq!(names, ["a", "b", "dir", "e", "h", "j"]);
    assert_eq!(found["h"], 5);
    let found = uses(&["top".into()], &code_only("fn f() { super::other::g(); }"));
    assert_eq!(found.keys().collect::<Vec<_>>(), ["other"]);
}

#[test]
fn a_cycle_is_found_and_named_with_where_each_use_is() {
    fn edge(edges: &mut Edges, a: &str, b: &str) {
        edges
            .entry(a.into())
            .or_default()
            .insert(b.into(), format!("{a}.rs:1"));
    }
    let mut edges = Edges::new();
    edge(&mut edges, "a", "b");
    edge(&mut edges, "b", "c");
    edge(&mut edges, "a", "c");
    assert_eq!(find_cycle(&edges), None);
    edge(&mut edges, "c", "a");
    let cycle = find_cycle(&edges).unwrap();
    assert_eq!(
        describe(&cycle, &edges),
        "a -> b (a.rs:1) -> c (b.rs:1) -> a (c.rs:1)"
    );
}
