//! Comments point at what exists: every `docs/<file>.md#<anchor>` reference
//! in the repository names a document and a heading of it, and no comment
//! cites a document outside the repository, an issue by number, or an HPE
//! bug number that docs/hpe-import-export.md does not define (see
//! docs/README.md).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The repository root: the parent of this crate's directory.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate directory has a parent")
        .to_path_buf()
}

/// Every file under `dir` with one of the extensions `exts`, skipping build
/// output (`target`), hidden directories and symbolic links.
fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files(&path, exts, out);
            }
        } else if kind.is_file() {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if exts.contains(&ext) {
                out.push(path);
            }
        }
    }
}

/// Every `docs/<file>.md` reference in `text`, with the anchor that follows
/// it (`#<anchor>`), if any. `<file>` is returned relative to `docs/`. A
/// `docs/` that continues a longer path (`x/docs/`, `mydocs/`) is not one.
fn doc_links(text: &str) -> Vec<(String, Option<String>)> {
    let mut links = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("docs/") {
        let start = from + found;
        from = start + "docs/".len();
        let before = text[..start].chars().next_back();
        if before
            .is_some_and(|c| c.is_alphanumeric() || c == '/' || c == '.' || c == '-' || c == '_')
        {
            continue;
        }
        let rest = &text[from..];
        let path_len = rest
            .find(|c: char| {
                !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' || c == '/')
            })
            .unwrap_or(rest.len());
        let path = &rest[..path_len];
        let Some(md) = path.find(".md") else {
            continue;
        };
        let end = md + ".md".len();
        if path[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        let anchor = if end == path.len() && rest[path_len..].starts_with('#') {
            let tail = &rest[path_len + 1..];
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(tail.len());
            Some(tail[..len].to_string())
        } else {
            None
        };
        links.push((path[..end].to_string(), anchor));
    }
    links
}

/// GitHub's anchor for a heading's text: lower case, each space a `-`,
/// letters, digits, `-` and `_` kept, everything else dropped.
fn slug(title: &str) -> String {
    title
        .chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings, as GitHub makes them (a
/// repeated heading gets `-1`, `-2`, ...). Lines inside fenced code are not
/// headings.
fn anchors(markdown: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.is_empty() && !title.starts_with(' ') {
            continue;
        }
        let base = slug(title.trim());
        let count = seen.entry(base.clone()).or_insert(0);
        if *count == 0 {
            out.push(base.clone());
        } else {
            out.push(format!("{base}-{count}"));
        }
        *count += 1;
    }
    out
}

/// The comment text of each line (numbered from 1) of a source file: what
/// follows the first `//` not preceded by `:` (that is a URL) in Rust and
/// WIT, what follows a leading `#` in TOML and shell.
fn comments(path: &Path, text: &str) -> Vec<(usize, String)> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let hash = ext == "toml" || ext == "sh";
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let comment = if hash {
            line.trim_start().strip_prefix('#')
        } else {
            line.match_indices("//")
                .find(|&(at, _)| !line[..at].ends_with(':'))
                .map(|(at, _)| &line[at + 2..])
        };
        if let Some(comment) = comment {
            out.push((index + 1, comment.to_string()));
        }
    }
    out
}

/// The numbers that follow `word` in `text`: `word` as the start of a word,
/// then spaces or `#`, then digits.
fn numbers_after(text: &str, word: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices(word) {
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
        {
            continue;
        }
        let rest = text[at + word.len()..].trim_start_matches(|c: char| c == ' ' || c == '#');
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<u64>() {
            out.push(n);
        }
    }
    out
}

#[test]
fn slugs_and_links_are_read_as_github_and_the_comments_do() {
    assert_eq!(
        slug("Bug 4: add keeps deleted records"),
        "bug-4-add-keeps-deleted-records"
    );
    assert_eq!(slug("Known bugs in HPE's tool"), "known-bugs-in-hpes-tool");
    assert_eq!(slug("The export.json index"), "the-exportjson-index");
    assert_eq!(
        anchors("# A\n```\n# not a heading\n```\n## B c\n#tag\n## B c\n"),
        vec!["a", "b-c", "b-c-1"]
    );
    // Built with `{d}` so that this file holds no such link itself.
    let d = "docs";
    let text =
        format!("see {d}/a.md#x-1). Also `{d}/b.md`, {d}/README.md. and x/{d}/c.md, my{d}/d.md");
    assert_eq!(
        doc_links(&text),
        vec![
            ("a.md".to_string(), Some("x-1".to_string())),
            ("b.md".to_string(), None),
            ("README.md".to_string(), None),
        ]
    );
    assert_eq!(
        numbers_after("hpe's bug 4 and debug 5, issue #10", "bug"),
        vec![4]
    );
    assert_eq!(
        numbers_after("hpe's bug 4 and debug 5, issue #10", "issue"),
        vec![10]
    );
    let lines = comments(
        Path::new("x.rs"),
        "let u = \"s3://b/k\"; // note\nfn f() {}\n",
    );
    assert_eq!(lines, vec![(1, " note".to_string())]);
}

#[test]
fn comments_cite_only_what_docs_defines() {
    let root = root();
    let docs = root.join("docs");
    let hpe = fs::read_to_string(docs.join("hpe-import-export.md"))
        .expect("docs/hpe-import-export.md exists");
    let hpe_anchors = anchors(&hpe);
    let mut sources = Vec::new();
    files(&root, &["rs", "wit", "toml", "sh", "md"], &mut sources);
    assert!(
        sources.len() > 50,
        "found only {} files under {}",
        sources.len(),
        root.display()
    );

    let mut problems = Vec::new();
    let mut known: HashMap<PathBuf, Option<Vec<String>>> = HashMap::new();
    for path in &sources {
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        let shown = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        for (file, anchor) in doc_links(&text) {
            let target = docs.join(&file);
            let headings = known
                .entry(target.clone())
                .or_insert_with(|| fs::read_to_string(&target).ok().map(|t| anchors(&t)));
            match (headings.as_ref(), anchor.as_deref()) {
                (None, _) => problems.push(format!(
                    "{shown}: links to docs/{file}, which does not exist"
                )),
                (Some(list), Some(a)) if !list.iter().any(|h| h.as_str() == a) => {
                    problems.push(format!(
                        "{shown}: links to docs/{file}#{a}, a heading docs/{file} does not have"
                    ))
                }
                _ => {}
            }
        }
        if path.extension().and_then(|e| e.to_str()) == Some("md") {
            continue;
        }
        for (line, comment) in comments(path, &text) {
            let lower = comment.to_lowercase();
            let at = format!("{shown}:{line}");
            let outside = lower.contains('\u{a7}')
                || ["spec section", "shared/spec", "shared/reviews"]
                    .iter()
                    .any(|s| lower.contains(s));
            if outside {
                problems.push(format!(
                    "{at}: cites a document outside the repository; put what it says in docs/ and link there: {}",
                    comment.trim()
                ));
            }
            for n in numbers_after(&lower, "issue") {
                problems.push(format!(
                    "{at}: cites issue {n}, which is not in the repository; say the reason instead"
                ));
            }
            for n in numbers_after(&lower, "bug") {
                let exact = format!("bug-{n}");
                let prefix = format!("bug-{n}-");
                if !hpe_anchors
                    .iter()
                    .any(|h| *h == exact || h.starts_with(prefix.as_str()))
                {
                    problems.push(format!(
                        "{at}: cites HPE's bug {n}, which docs/hpe-import-export.md does not define (a `### Bug {n}: ...` heading)"
                    ));
                }
            }
        }
    }
    for entry in fs::read_dir(&docs).expect("docs/ exists").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && name != "README.md" {
            let index = fs::read_to_string(docs.join("README.md")).unwrap_or_default();
            if !index.contains(&format!("({name})")) {
                problems.push(format!("docs/README.md: has no line for {name}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
