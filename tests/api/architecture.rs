//! One dependency direction: `domain` ← `db` ← `events` ← `services` ← `graphql` ← `http` /
//! `realtime`, with `jobs` and outbound `webhooks` below the services. The test reads the
//! crate's source and fails on an import against that direction, in any of its forms: a `use`
//! (groups `use crate::{a, services::b}` included), a path in code (`crate::services::x()`), or
//! a relative one (`super::super::services`), resolved from the module it is written in.
//! Comments and string literals are not code and are skipped.

use std::{
    fmt,
    path::{Path, PathBuf},
};

/// `from` (a top-level module of the crate) must not depend on `to`.
struct Rule {
    from: &'static [&'static str],
    to: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        from: &["domain", "events", "jobs", "notifications", "webhooks"],
        to: "services",
    },
    Rule {
        from: &["services"],
        to: "graphql",
    },
];

/// One import against a rule.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    file: String,
    line: usize,
    path: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} uses {}", self.file, self.line, self.path)
    }
}

#[test]
fn lower_layers_do_not_import_higher_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("api/src");
    let mut files = Vec::new();
    collect_rust_files(&root, &mut files);
    assert!(
        files.len() > 50,
        "found only {} source files under {}",
        files.len(),
        root.display()
    );
    let mut violations = Vec::new();
    for file in &files {
        let relative = file
            .strip_prefix(&root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        let source = std::fs::read_to_string(file).expect("readable source");
        violations.extend(check(&relative, &source));
    }
    assert!(
        violations.is_empty(),
        "imports against the dependency direction:\n{}",
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn every_form_of_a_forbidden_import_is_caught() {
    let cases = [
        ("events/relay.rs", "use crate::services::outbox;"),
        (
            "events/relay.rs",
            "use crate::{\n    auth::Actor,\n    services::outbox,\n};",
        ),
        ("events/relay.rs", "use super::super::services::outbox;"),
        ("events/mod.rs", "use super::services;"),
        ("events/mod.rs", "use super::{db, services::tenant as t};"),
        (
            "jobs/runtime.rs",
            "fn f() { crate::services::payments::x(); }",
        ),
        (
            "webhooks/worker.rs",
            "fn f() -> crate :: services :: outbox::Event { todo!() }",
        ),
        // In `mod tests` of `domain/money.rs`, `super` is `money` and `super::super` is `domain`.
        (
            "domain/money.rs",
            "mod tests { use super::super::super::services; }",
        ),
        (
            "domain/money.rs",
            "mod tests { mod deeper { fn f() { super::super::super::super::services::x(); } } }",
        ),
        (
            "services/payments/charges.rs",
            "use crate::graphql::loaders;",
        ),
        ("services/orders.rs", "use super::super::graphql;"),
        (
            "services/payments/mod.rs",
            "pub use crate::{error::ApiError, graphql::context::actor};",
        ),
    ];
    for (file, source) in cases {
        let found = check(file, source);
        assert_eq!(found.len(), 1, "{file}: {source}\nfound {found:?}");
    }
    let grouped = check(
        "events/relay.rs",
        "use crate::{\n    auth::Actor,\n    services::{outbox, tenant},\n};",
    );
    assert_eq!(
        grouped
            .iter()
            .map(|violation| (violation.line, violation.path.as_str()))
            .collect::<Vec<_>>(),
        [
            (3, "crate::services::outbox"),
            (3, "crate::services::tenant")
        ],
        "each path of a group, on its own line"
    );
}

#[test]
fn what_is_not_an_import_against_the_direction_passes() {
    let cases = [
        // Comments and strings mention modules without depending on them.
        (
            "events/relay.rs",
            "// use crate::services::outbox;\nfn f() {}",
        ),
        (
            "events/relay.rs",
            "/// See [`crate::services::outbox`].\nfn f() {}",
        ),
        (
            "events/relay.rs",
            "/* crate::services /* nested */ x */ fn f() {}",
        ),
        (
            "events/relay.rs",
            r#"const S: &str = "crate::services::outbox";"#,
        ),
        (
            "events/relay.rs",
            r##"const S: &str = r#"use crate::services;"#;"##,
        ),
        ("events/relay.rs", "fn f<'a>(c: char) -> bool { c == '\"' }"),
        // Same names elsewhere: a sibling module, another crate, a higher layer.
        ("events/mod.rs", "use super::db::services;"),
        ("events/relay.rs", "use super::services;"),
        ("jobs/runtime.rs", "use api::services;"),
        ("graphql/payments.rs", "use crate::services::payments;"),
        ("services/orders.rs", "use crate::events::graphql;"),
        ("http/graphql.rs", "use crate::graphql::AppSchema;"),
        (
            "domain/money.rs",
            "mod tests { use super::super::services; }",
        ),
    ];
    for (file, source) in cases {
        assert_eq!(check(file, source), Vec::new(), "{file}: {source}");
    }
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// The imports of `source` (the file at `file`, relative to `src/`) against [`RULES`].
fn check(file: &str, source: &str) -> Vec<Violation> {
    let module = module_of(file);
    let Some(rule_from) = module.first() else {
        return Vec::new();
    };
    let forbidden: Vec<&str> = RULES
        .iter()
        .filter(|rule| rule.from.contains(&rule_from.as_str()))
        .map(|rule| rule.to)
        .collect();
    if forbidden.is_empty() {
        return Vec::new();
    }
    let tokens = tokens(source);
    let mut violations = Vec::new();
    for (line, path) in paths(&tokens, &module) {
        if let Some(top) = path.first()
            && forbidden.contains(&top.as_str())
        {
            violations.push(Violation {
                file: file.to_string(),
                line,
                path: format!("crate::{}", path.join("::")),
            });
        }
    }
    violations
}

/// The module a file defines: `events/relay.rs` is `events::relay`, `events/mod.rs` and
/// `lib.rs` the directory's module.
fn module_of(file: &str) -> Vec<String> {
    let mut segments: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        segments.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segments.pop();
    }
    segments
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Other(char),
}

/// The tokens of `source` with their line, comments and string and char literals left out.
fn tokens(source: &str) -> Vec<(usize, Token)> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let newlines = |from: usize, to: usize| chars[from..to].iter().filter(|c| **c == '\n').count();
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
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
                    i += 1;
                }
            }
        } else if c == '"' {
            i = string_end(&chars, i + 1);
        } else if (c == 'r' || c == 'b')
            && let Some(end) = raw_string_end(&chars, i)
        {
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\'') or a lifetime ('a): only the first closes.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push((line, Token::Ident(word)));
        } else if c == ':' && next == Some(':') {
            tokens.push((line, Token::PathSep));
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            tokens.push((
                line,
                match c {
                    '{' => Token::Open,
                    '}' => Token::Close,
                    other => Token::Other(other),
                },
            ));
            i += 1;
        }
        line += newlines(start, i.min(chars.len()));
    }
    tokens
}

/// Just past the `"` closing a string whose body starts at `i`.
fn string_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Just past a raw or byte string starting at `i` (`r"…"`, `r#"…"#`, `b"…"`, `br#"…"#`), or
/// `None` when `i` starts an identifier instead.
fn raw_string_end(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if chars[j] == 'b' {
        j += 1;
        if chars.get(j) == Some(&'"') {
            return Some(string_end(chars, j + 1));
        }
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|c| **c == '#').count();
    j += hashes;
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(j)
}

/// Every path of the crate that `tokens` name, resolved to its segments below `crate`, with
/// the line it is on. `module` is the module the tokens are written in.
fn paths(tokens: &[(usize, Token)], module: &[String]) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    // The module at each open brace: `mod name {` enters `name`.
    let mut scopes: Vec<Option<String>> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let here = || -> Vec<String> {
            module
                .iter()
                .cloned()
                .chain(scopes.iter().flatten().cloned())
                .collect()
        };
        match &tokens[i].1 {
            Token::Open => {
                let name = match i.checked_sub(2).map(|j| (&tokens[j].1, &tokens[j + 1].1)) {
                    Some((Token::Ident(keyword), Token::Ident(name))) if keyword == "mod" => {
                        Some(name.clone())
                    }
                    _ => None,
                };
                scopes.push(name);
                i += 1;
            }
            Token::Close => {
                scopes.pop();
                i += 1;
            }
            Token::Ident(word) if word == "use" => {
                let end = tokens[i..]
                    .iter()
                    .position(|(_, token)| *token == Token::Other(';'))
                    .map_or(tokens.len(), |offset| i + offset);
                let mut trees = Vec::new();
                expand_use(&tokens[i + 1..end], Vec::new(), &mut trees);
                for (line, path) in trees {
                    if let Some(resolved) = resolve(&path, &here()) {
                        found.push((line, resolved));
                    }
                }
                i = end + 1;
            }
            Token::Ident(word)
                if matches!(word.as_str(), "crate" | "super" | "self")
                    && tokens.get(i + 1).map(|(_, token)| token) == Some(&Token::PathSep) =>
            {
                let line = tokens[i].0;
                let mut path = vec![word.clone()];
                let mut j = i + 1;
                while tokens.get(j).map(|(_, token)| token) == Some(&Token::PathSep) {
                    match tokens.get(j + 1).map(|(_, token)| token) {
                        Some(Token::Ident(segment)) => path.push(segment.clone()),
                        _ => break,
                    }
                    j += 2;
                }
                if let Some(resolved) = resolve(&path, &here()) {
                    found.push((line, resolved));
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    found
}

/// The paths of a use tree (`a::{b, c::{d as e, *}}`), each with the line of its last segment.
fn expand_use(tokens: &[(usize, Token)], prefix: Vec<String>, out: &mut Vec<(usize, Vec<String>)>) {
    let mut path = prefix.clone();
    let mut line = tokens.first().map_or(0, |(line, _)| *line);
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].1 {
            Token::Ident(word) if word == "as" => {
                // The alias names nothing of the crate.
                i += 2;
                continue;
            }
            Token::Ident(segment) => {
                path.push(segment.clone());
                line = tokens[i].0;
            }
            Token::Open => {
                let close = matching_close(tokens, i);
                for branch in split_top_level(&tokens[i + 1..close]) {
                    expand_use(branch, path.clone(), out);
                }
                path = prefix.clone();
                i = close + 1;
                continue;
            }
            // Branches come split at their commas, so none is left at this level.
            _ => {}
        }
        i += 1;
    }
    if path.len() > prefix.len() {
        out.push((line, path));
    }
}

fn matching_close(tokens: &[(usize, Token)], open: usize) -> usize {
    let mut depth = 0;
    for (offset, (_, token)) in tokens[open..].iter().enumerate() {
        match token {
            Token::Open => depth += 1,
            Token::Close => {
                depth -= 1;
                if depth == 0 {
                    return open + offset;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

fn split_top_level(tokens: &[(usize, Token)]) -> Vec<&[(usize, Token)]> {
    let mut branches = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, (_, token)) in tokens.iter().enumerate() {
        match token {
            Token::Open => depth += 1,
            Token::Close => depth -= 1,
            Token::Other(',') if depth == 0 => {
                branches.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    branches.push(&tokens[start..]);
    branches
}

/// `path` as segments below `crate`, when it starts at `crate`, `super` or `self` (written in
/// `module`); `None` for a path into another crate or one relative to local names.
fn resolve(path: &[String], module: &[String]) -> Option<Vec<String>> {
    let mut segments = path.iter().peekable();
    let mut base: Vec<String> = match segments.peek().map(|segment| segment.as_str()) {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        Some("super" | "self") => module.to_vec(),
        _ => return None,
    };
    while let Some(segment) = segments.peek() {
        match segment.as_str() {
            "self" => {}
            "super" => {
                base.pop()?;
            }
            _ => break,
        }
        segments.next();
    }
    base.extend(segments.cloned());
    Some(base)
}
