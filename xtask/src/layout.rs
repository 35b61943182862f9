//! The daemon's layout rules, checked by this module's tests (so `cargo xtask test` runs
//! them) and shown by `cargo xtask layout`:
//!
//! * no source file of `dns-userspace/src` outside tests is over [`MAX_LINES`] lines;
//! * the modules depend on each other without cycles, between folders (`dns`, `steering`,
//!   ...) and between the modules inside them (`steering::policy`, `steering::probe`, ...),
//!   judged by the `crate::`, `super::` and `self::` paths of the code that is not a test
//!   (and the paths of `use` declarations). A folder's own `mod.rs` declaring and
//!   re-exporting its modules is not a dependency on them; their use of it is;
//! * the folders depend on each other only as [`ALLOWED`] says.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

/// Most lines in one source file outside tests.
pub const MAX_LINES: usize = 1000;

/// Which top-level modules each may use (any other dependency between them is an error).
pub const ALLOWED: &[(&str, &[&str])] = &[
    ("limits", &[]),
    ("logs", &[]),
    ("geo", &["logs"]),
    ("datapath", &["geo", "logs"]),
    ("dns", &["datapath", "geo", "limits", "logs"]),
    ("steering", &["datapath", "dns", "geo", "logs"]),
    ("api", &["steering", "datapath", "dns", "geo", "logs"]),
    (
        "config",
        &["dns", "steering", "datapath", "api", "geo", "logs"],
    ),
    (
        "daemon",
        &[
            "api", "config", "datapath", "dns", "geo", "limits", "steering", "logs",
        ],
    ),
    (
        "main",
        &[
            "api", "config", "daemon", "datapath", "dns", "geo", "steering", "logs",
        ],
    ),
];

/// One source file.
#[derive(Clone, Debug)]
pub struct Source {
    /// Relative to the source directory.
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    /// The module the file is: `lib.rs` the crate root (empty), `a/mod.rs` and `a.rs` `a`,
    /// `a/b.rs` `a::b`, `main.rs` `main` (the binary, a module of its own here).
    pub fn module(&self) -> Vec<String> {
        let mut parts: Vec<String> = self
            .path
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if let Some(last) = parts.pop() {
            match last.strip_suffix(".rs") {
                Some("lib" | "mod") => {}
                Some(stem) => parts.push(stem.to_string()),
                None => parts.push(last),
            }
        }
        parts
    }

    /// A test file: `tests.rs`, or anything in a `tests` folder.
    pub fn is_test(&self) -> bool {
        self.path.file_name().is_some_and(|n| n == "tests.rs")
            || self.path.iter().any(|p| p == "tests")
    }

    pub fn lines(&self) -> usize {
        self.text.lines().count()
    }
}

/// Every `.rs` file under `src`, sorted by path.
pub fn sources(src: &Path) -> Result<Vec<Source>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<Source>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                out.push(Source { path: rel, text });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(src, src, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The files outside tests over `max` lines, with their line counts.
pub fn long_files(sources: &[Source], max: usize) -> Vec<(PathBuf, usize)> {
    sources
        .iter()
        .filter(|s| !s.is_test() && s.lines() > max)
        .map(|s| (s.path.clone(), s.lines()))
        .collect()
}

/// `text` with comments, string and character literals blanked out, so that neither braces
/// nor paths inside them count.
fn strip_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
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
            && (next == Some('"') || next == Some('#'))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"...", r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &chars[i..j.min(chars.len())] {
                blank(&mut out, ch);
            }
            i = j;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or else a lifetime.
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &ch in &chars[i..=end] {
                        blank(&mut out, ch);
                    }
                    i = end + 1;
                }
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

/// Blanks out every item marked `#[cfg(test)]` (a `mod tests;` line, or a whole block) in
/// code already stripped of literals.
fn strip_tests(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out: Vec<char> = code.chars().collect();
    let text: String = out.iter().collect();
    let mut search = 0;
    while let Some(found) = text[search..].find(MARK) {
        let start = text[..search + found].chars().count();
        let mut i = start;
        // The item ends at its first `;` outside brackets, or with the block it opens.
        let (mut depth, mut end) = (0i32, out.len());
        while i < out.len() {
            match out[i] {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                '{' if depth == 0 => {
                    let mut braces = 0;
                    while i < out.len() {
                        match out[i] {
                            '{' => braces += 1,
                            '}' => {
                                braces -= 1;
                                if braces == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    end = (i + 1).min(out.len());
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        for ch in &mut out[start..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        search += found + MARK.len();
    }
    out.into_iter().collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Path,
    Other(char),
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token::Path);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Token::Other(c));
            }
            i += 1;
        }
    }
    out
}

/// The paths a `use` tree starting at `tokens[*i]` names, each as its segments; leaves
/// `*i` after the tree.
fn use_tree(tokens: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    loop {
        match tokens.get(*i) {
            Some(Token::Ident(name)) => {
                path.push(name.clone());
                *i += 1;
            }
            Some(Token::Other('{')) => {
                *i += 1;
                loop {
                    match tokens.get(*i) {
                        Some(Token::Other('}')) => {
                            *i += 1;
                            return;
                        }
                        Some(Token::Other(',')) => *i += 1,
                        None => return,
                        Some(_) => use_tree(tokens, i, &path, out),
                    }
                }
            }
            Some(Token::Other('*')) => {
                *i += 1;
                out.push(path);
                return;
            }
            _ => {
                out.push(path);
                return;
            }
        }
        match tokens.get(*i) {
            Some(Token::Path) => *i += 1,
            Some(Token::Ident(kw)) if kw == "as" => {
                *i += 2;
                out.push(path);
                return;
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// Every path in `code` (non-test code, literals stripped) that starts with one of `roots`
/// (`crate`, `super`, `self`), or (in a `use`) any other identifier, with its segments.
fn paths(code: &str, roots: &[&str]) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_path = i > 0 && tokens[i - 1] == Token::Path;
        match &tokens[i] {
            Token::Ident(kw) if kw == "use" && !after_path => {
                i += 1;
                use_tree(&tokens, &mut i, &[], &mut out);
            }
            Token::Ident(first)
                if !after_path
                    && roots.contains(&first.as_str())
                    && tokens.get(i + 1) == Some(&Token::Path) =>
            {
                let mut path = vec![first.clone()];
                i += 1;
                while tokens.get(i) == Some(&Token::Path) {
                    match tokens.get(i + 1) {
                        Some(Token::Ident(name)) => {
                            path.push(name.clone());
                            i += 2;
                        }
                        _ => break,
                    }
                }
                out.push(path);
            }
            _ => i += 1,
        }
    }
    out
}

/// The crate's modules (by their files) and which module each uses, resolved to the
/// modules that exist.
#[derive(Clone, Debug, Default)]
pub struct Uses {
    /// Module → (module it uses → the file that does).
    pub edges: BTreeMap<Vec<String>, BTreeMap<Vec<String>, PathBuf>>,
}

/// What the non-test code of `sources` uses. `crate_name` (the library's name) is read as
/// `crate` in `main.rs`.
pub fn uses(sources: &[Source], crate_name: &str) -> Uses {
    let modules: BTreeSet<Vec<String>> = sources
        .iter()
        .filter(|s| !s.is_test())
        .map(Source::module)
        .collect();
    let mut uses = Uses::default();
    for source in sources.iter().filter(|s| !s.is_test()) {
        let here = source.module();
        let is_main = here == ["main"];
        let code = strip_tests(&strip_literals(&source.text));
        let roots: &[&str] = if is_main {
            &["crate", "super", "self", crate_name]
        } else {
            &["crate", "super", "self"]
        };
        for path in paths(&code, roots) {
            let mut absolute: Vec<String> = match path.first().map(String::as_str) {
                Some("crate") => path[1..].to_vec(),
                Some(first) if is_main && first == crate_name => path[1..].to_vec(),
                Some("self") => here.iter().chain(&path[1..]).cloned().collect(),
                Some("super") => {
                    let supers = path.iter().take_while(|p| *p == "super").count();
                    let base = &here[..here.len().saturating_sub(supers)];
                    base.iter().chain(&path[supers..]).cloned().collect()
                }
                Some(child)
                    if modules.contains(&[here.clone(), vec![child.to_string()]].concat()) =>
                {
                    here.iter().chain(&path).cloned().collect()
                }
                _ => continue,
            };
            // The longest prefix that is a module of the crate.
            while !absolute.is_empty() && !modules.contains(&absolute) {
                absolute.pop();
            }
            if absolute.is_empty() || absolute == here {
                continue;
            }
            uses.edges
                .entry(here.clone())
                .or_default()
                .entry(absolute)
                .or_insert_with(|| source.path.clone());
        }
    }
    uses
}

impl Uses {
    /// The dependencies between modules cut to their first `depth` segments (1: folders
    /// and top-level files; 2: also the modules inside folders), without self-edges and
    /// without a module's edges to its own descendants (a folder's `mod.rs` declares and
    /// re-exports them): module → (module it uses → a file that does).
    pub fn at_depth(&self, depth: usize) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
        let cut = |m: &[String]| m[..m.len().min(depth)].join("::");
        let mut out: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
        for (from, tos) in &self.edges {
            for (to, file) in tos {
                let (a, b) = (cut(from), cut(to));
                let descendant = b.starts_with(&format!("{a}::"));
                if a != b && !a.is_empty() && !b.is_empty() && !descendant {
                    out.entry(a)
                        .or_default()
                        .entry(b)
                        .or_insert_with(|| file.clone());
                }
            }
        }
        out
    }
}

/// A cycle in `graph` (its nodes, the first repeated at the end), if there is one.
pub fn find_cycle<V>(graph: &BTreeMap<String, BTreeMap<String, V>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    fn visit<V>(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, V>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Active) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_string(), Mark::Active);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

/// A cycle as `a -> b (a/x.rs) -> a (b.rs)`: each step with the file that makes it.
pub fn show_cycle(cycle: &[String], graph: &BTreeMap<String, BTreeMap<String, PathBuf>>) -> String {
    let mut out = cycle.first().cloned().unwrap_or_default();
    for pair in cycle.windows(2) {
        let file = graph
            .get(&pair[0])
            .and_then(|tos| tos.get(&pair[1]))
            .map_or(String::new(), |f| format!(" ({})", f.display()));
        let _ = write!(out, " -> {}{file}", pair[1]);
    }
    out
}

/// Every problem with the layout of `sources`, one line each.
pub fn problems(sources: &[Source], crate_name: &str) -> Vec<String> {
    let mut out: Vec<String> = long_files(sources, MAX_LINES)
        .into_iter()
        .map(|(path, n)| {
            format!(
                "{} has {n} lines, more than {MAX_LINES} outside tests",
                path.display()
            )
        })
        .collect();
    let uses = uses(sources, crate_name);
    for depth in [1, 2] {
        let graph = uses.at_depth(depth);
        if let Some(cycle) = find_cycle(&graph) {
            out.push(format!("module cycle: {}", show_cycle(&cycle, &graph)));
        }
    }
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (from, tos) in uses.at_depth(1) {
        for (to, file) in tos {
            let ok = allowed
                .get(from.as_str())
                .is_some_and(|targets| targets.contains(&to.as_str()));
            if !ok {
                out.push(format!(
                    "{from} uses {to} ({}), which the layout does not allow",
                    file.display()
                ));
            }
        }
    }
    out
}

/// `cargo xtask layout`: lines per folder, the module dependencies, and any problem.
pub fn report(src: &Path, crate_name: &str) -> Result<()> {
    let sources = sources(src)?;
    println!("lines per folder of {} (code / tests):", src.display());
    let mut per_folder: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for s in &sources {
        let top = s.module().first().cloned().unwrap_or_else(|| "lib".into());
        let entry = per_folder.entry(top).or_default();
        let (code, tests) = split_lines(s);
        entry.0 += code;
        entry.1 += tests;
    }
    for (folder, (code, tests)) in &per_folder {
        println!("  {folder:<10} {code:>6} / {tests:>5}");
    }
    let uses = uses(&sources, crate_name);
    for depth in [1, 2] {
        println!("module dependencies at depth {depth}:");
        for (from, tos) in uses.at_depth(depth) {
            let tos: Vec<&str> = tos.keys().map(String::as_str).collect();
            println!("  {from} -> {}", tos.join(", "));
        }
    }
    let problems = problems(&sources, crate_name);
    if problems.is_empty() {
        println!("layout ok: no file over {MAX_LINES} lines outside tests, no module cycles");
        Ok(())
    } else {
        anyhow::bail!("layout problems:\n  {}", problems.join("\n  "))
    }
}

/// (lines of code, lines of tests) of a file: a test file is all tests; otherwise the lines
/// from its `#[cfg(test)] mod tests {` on are.
fn split_lines(source: &Source) -> (usize, usize) {
    let n = source.lines();
    if source.is_test() {
        return (0, n);
    }
    let lines: Vec<&str> = source.text.lines().collect();
    let tests_at = lines
        .windows(2)
        .position(|w| w[0].starts_with("#[cfg(test)]") && w[1].starts_with("mod tests {"));
    match tests_at {
        Some(at) => (at, n - at),
        None => (n, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, text: &str) -> Source {
        Source {
            path: PathBuf::from(path),
            text: text.to_string(),
        }
    }

    #[test]
    fn modules_of_files() {
        let module = |p: &str| source(p, "").module().join("::");
        assert_eq!(module("lib.rs"), "");
        assert_eq!(module("main.rs"), "main");
        assert_eq!(module("dns/mod.rs"), "dns");
        assert_eq!(module("dns/zone.rs"), "dns::zone");
        assert_eq!(module("steering/probe/spec.rs"), "steering::probe::spec");
        assert!(source("dns/authority/tests.rs", "").is_test());
        assert!(source("config/tests/pools.rs", "").is_test());
        assert!(!source("dns/authority.rs", "").is_test());
    }

    #[test]
    fn paths_come_from_use_trees_and_code_but_not_tests_comments_or_strings() {
        let code = r#"
use crate::{a::{X, b::Y}, c as d};
use super::e::*;
use std::fmt;
// crate::commented::Out
/* use crate::blocked; */
fn f() -> &'static str {
    let _ = '{';
    let _ = crate::g::h(self::i::J);
    "crate::quoted"
}
pub(crate) struct S;
#[cfg(test)]
mod tests {
    use crate::only_in_tests;
}
#[cfg(test)]
use crate::test_import;
fn after() { crate::k::L }
"#;
        let found: Vec<String> = paths(
            &strip_tests(&strip_literals(code)),
            &["crate", "super", "self"],
        )
        .iter()
        .map(|p| p.join("::"))
        .collect();
        assert_eq!(
            found,
            [
                "crate::a::X",
                "crate::a::b::Y",
                "crate::c",
                "super::e",
                "std::fmt",
                "crate::g::h",
                "self::i::J",
                "crate::k::L",
            ]
        );
    }

    #[test]
    fn a_cycle_is_found_and_shown_with_its_files() {
        let sources = [
            source("lib.rs", "pub mod a; pub mod b; pub mod c;"),
            source("a/mod.rs", "pub mod x;"),
            source("a/x.rs", "use crate::b::Thing;"),
            source("b.rs", "pub fn f() { crate::c::g() }"),
            source("c.rs", "use crate::a::x::Other;"),
            source("d.rs", "use crate::a;"),
        ];
        let uses = uses(&sources, "demo");
        let graph = uses.at_depth(1);
        let cycle = find_cycle(&graph).expect("a -> b -> c -> a");
        assert_eq!(cycle, ["a", "b", "c", "a"]);
        assert_eq!(
            show_cycle(&cycle, &graph),
            "a -> b (a/x.rs) -> c (b.rs) -> a (c.rs)"
        );
        let problems = problems(&sources, "demo");
        assert!(
            problems
                .iter()
                .any(|p| p == "module cycle: a -> b (a/x.rs) -> c (b.rs) -> a (c.rs)"),
            "{problems:?}"
        );
        // Without the edge that closes it, no cycle.
        let acyclic: Vec<Source> = sources
            .iter()
            .filter(|s| s.path != Path::new("c.rs"))
            .cloned()
            .collect();
        assert_eq!(find_cycle(&super::uses(&acyclic, "demo").at_depth(1)), None);
    }

    #[test]
    fn cycles_inside_a_folder_are_found_too() {
        let sources = [
            source("s/mod.rs", "pub mod p; pub mod q;"),
            source("s/p.rs", "use super::q::Q;"),
            source("s/q/mod.rs", "mod r; pub use r::Q;"),
            source("s/q/r.rs", "use crate::s::p::P;"),
        ];
        let uses = uses(&sources, "demo");
        assert_eq!(find_cycle(&uses.at_depth(1)), None);
        assert_eq!(
            find_cycle(&uses.at_depth(2)),
            Some(vec!["s::p".into(), "s::q".into(), "s::p".into()])
        );
    }

    #[test]
    fn lines_of_code_and_tests() {
        let text = "use a;\n#[cfg(test)]\nfn helper() {}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";
        assert_eq!(split_lines(&source("x.rs", text)), (4, 5));
        assert_eq!(split_lines(&source("x/tests.rs", text)), (0, 9));
        assert_eq!(split_lines(&source("y.rs", "a\nb\n")), (2, 0));
    }

    #[test]
    fn long_files_outside_tests_are_problems() {
        let long = "x\n".repeat(MAX_LINES + 1);
        let sources = [
            source("big.rs", &long),
            source("big/tests.rs", &long),
            source("ok.rs", &"x\n".repeat(MAX_LINES)),
        ];
        assert_eq!(
            long_files(&sources, MAX_LINES),
            [(PathBuf::from("big.rs"), MAX_LINES + 1)]
        );
        assert_eq!(
            problems(&sources, "demo"),
            ["big.rs has 1001 lines, more than 1000 outside tests"]
        );
    }

    #[test]
    fn the_daemon_follows_the_layout() {
        let src = crate::cmd::workspace_root().join("dns-userspace/src");
        let sources = sources(&src).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(sources.len() > 20, "{} files", sources.len());
        let problems = problems(&sources, "hotpool");
        assert!(
            problems.is_empty(),
            "dns-userspace/src breaks the layout rules:\n  {}",
            problems.join("\n  ")
        );
        // The check sees the dependencies that are there.
        let folders = uses(&sources, "hotpool").at_depth(1);
        assert!(folders["steering"].contains_key("datapath"), "{folders:?}");
        assert!(folders["config"].contains_key("steering"), "{folders:?}");
    }
}
