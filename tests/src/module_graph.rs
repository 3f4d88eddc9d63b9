//! The file-level dependency graph of a crate's product code, read from its
//! sources, so that `tests/architecture.rs` can hold the architecture's
//! absences ("nothing depends on `cli`", "evaluators never touch `sys`", "no
//! import circles") as tests rather than as hopes.
//!
//! A file depends on another when it names an item of the other's module:
//! `crate::a::b`, `super::x`, `self::child`, or a child module declared in
//! the file (`mod child;` then `child::f`). A child naming its own ancestor
//! (`super::Verdict` in a rule's folder) is not counted: a module is its
//! children's namespace, and a child may always lean on it. Test code is left
//! out: files called `tests.rs`, and everything from a `#[cfg(test)]` line on.
//!
//! This reads text, not a parsed AST: it is a lint with known limits (a
//! `use` through a re-export counts as a use of the re-exporting module,
//! which is what a reader sees too), good enough to keep circles out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One product source file and what it depends on.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to the crate's `src/`, e.g. `checks/screen_lock/mod.rs`.
    pub path: String,
    /// The module path, e.g. `["checks", "screen_lock"]`; empty for lib.rs.
    pub module: Vec<String>,
    /// The product code (comments and test code removed).
    pub code: String,
    /// Line count of the whole file as written.
    pub lines: usize,
    /// The first line of the file.
    pub first_line: String,
}

/// A crate's files and the edges between them.
#[derive(Debug, Clone)]
pub struct ModuleGraph {
    pub files: Vec<SourceFile>,
    /// `edges[from]` = files `from` depends on (indices into `files`).
    pub edges: Vec<BTreeSet<usize>>,
}

impl ModuleGraph {
    /// Reads every `.rs` file under `src_dir` (a crate's `src/`), but the
    /// binaries in `src/bin/` and `main.rs`, which sit on top of everything.
    pub fn read(src_dir: &Path) -> std::io::Result<Self> {
        let mut paths = Vec::new();
        collect_rs(src_dir, &mut paths)?;
        let mut files = Vec::new();
        for path in paths {
            let relative = path
                .strip_prefix(src_dir)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            if relative == "main.rs" || relative.starts_with("bin/") || is_test_file(&relative) {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            files.push(SourceFile {
                module: module_path(&relative),
                code: product_code(&text),
                lines: text.lines().count(),
                first_line: text.lines().next().unwrap_or_default().to_owned(),
                path: relative,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let by_module: BTreeMap<Vec<String>, usize> = files
            .iter()
            .enumerate()
            .map(|(index, file)| (file.module.clone(), index))
            .collect();
        let edges = files
            .iter()
            .enumerate()
            .map(|(index, file)| {
                referenced_paths(file)
                    .into_iter()
                    .filter_map(|path| resolve(&by_module, &path))
                    .filter(|&target| {
                        target != index && !is_ancestor(&files[target].module, &file.module)
                    })
                    .collect()
            })
            .collect();
        Ok(Self { files, edges })
    }

    /// Index of the file at `path` (relative to `src/`).
    pub fn index_of(&self, path: &str) -> Option<usize> {
        self.files.iter().position(|file| file.path == path)
    }

    /// Every group of two or more files that depend on each other in a
    /// circle (the strongly connected components), each sorted by path.
    pub fn circles(&self) -> Vec<Vec<String>> {
        let components = strongly_connected(&self.edges);
        let mut circles: Vec<Vec<String>> = components
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let mut names: Vec<String> = component
                    .into_iter()
                    .map(|index| self.files[index].path.clone())
                    .collect();
                names.sort();
                names
            })
            .collect();
        circles.sort();
        circles
    }

    /// The files `from` depends on, by path.
    pub fn dependencies_of(&self, from: usize) -> Vec<&str> {
        self.edges[from]
            .iter()
            .map(|&to| self.files[to].path.as_str())
            .collect()
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn is_test_file(relative: &str) -> bool {
    relative == "tests.rs" || relative.ends_with("/tests.rs") || relative.contains("/tests/")
}

fn module_path(relative: &str) -> Vec<String> {
    let without_ext = relative.trim_end_matches(".rs");
    let mut parts: Vec<String> = without_ext.split('/').map(str::to_owned).collect();
    if parts
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        parts.pop();
    }
    parts
}

/// The text without comments, doc comments or test code.
fn product_code(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        // A trailing comment: cut at `//` outside a string, roughly (a `//`
        // inside a string literal, as in a URL, only loses the line's tail).
        let line = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// Every module path the file names, absolute (from the crate root).
fn referenced_paths(file: &SourceFile) -> Vec<Vec<String>> {
    let children = declared_children(&file.code);
    // `super` in a file is relative to its module; for `a/b.rs` (module
    // a::b) `super` is `a`, for `a/mod.rs` (module `a`) `super` is the root.
    let own = &file.module;
    let parent: Vec<String> = own
        .iter()
        .take(own.len().saturating_sub(1))
        .cloned()
        .collect();
    let mut found = Vec::new();
    let bytes = file.code.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let starts_word = at == 0 || !is_path_char(bytes[at - 1]);
        if !starts_word || !file.code.is_char_boundary(at) {
            at += 1;
            continue;
        }
        let rest = &file.code[at..];
        let (base, skip) = if rest.starts_with("crate::") {
            (Some(Vec::new()), "crate::".len())
        } else if rest.starts_with("super::") {
            (Some(parent.clone()), "super::".len())
        } else if rest.starts_with("self::") {
            (Some(own.clone()), "self::".len())
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !word.is_empty() && children.contains(&word) && rest[word.len()..].starts_with("::")
            {
                (Some(own.clone()), 0)
            } else {
                (None, word.len().max(1))
            }
        };
        match base {
            Some(base) => {
                let (paths, used) = expand_path(&file.code[at + skip..]);
                for path in paths {
                    let mut full = base.clone();
                    let mut path = path.into_iter().peekable();
                    // `super::super::x`
                    while path.peek().is_some_and(|segment| segment == "super") {
                        path.next();
                        full.pop();
                    }
                    full.extend(path);
                    found.push(full);
                }
                at += skip + used.max(1);
            }
            None => at += skip,
        }
    }
    found
}

fn is_path_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':'
}

/// The child modules a file declares: `mod x;` and `pub mod x;`.
fn declared_children(code: &str) -> BTreeSet<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line
                .strip_prefix("pub(crate) ")
                .or_else(|| line.strip_prefix("pub "))
                .unwrap_or(line);
            let name = line.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// Reads `a::b::{c, d::e}` (after a `crate::`) into the paths it names, and
/// how many bytes it took. Only module-looking segments matter; the item at
/// the end is kept too, and resolution finds the longest module prefix.
fn expand_path(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    let mut at = 0;
    let bytes = text.as_bytes();
    loop {
        let word: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !word.is_empty() {
            at += word.len();
            prefix.push(word);
            if text[at..].starts_with("::") {
                at += 2;
                continue;
            }
            return (vec![prefix], at);
        }
        if bytes.get(at) == Some(&b'{') {
            // A group: split at top-level commas and recurse.
            let mut depth = 0;
            let mut end = at;
            for (offset, byte) in bytes[at..].iter().enumerate() {
                match byte {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = at + offset;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let inner = &text[at + 1..end.max(at + 1)];
            let mut paths = Vec::new();
            for part in split_top_level(inner) {
                let (sub, _) = expand_path(part.trim());
                for path in sub {
                    let mut full = prefix.clone();
                    if path.first().is_some_and(|s| s == "self") {
                        full.extend(path.into_iter().skip(1));
                    } else {
                        full.extend(path);
                    }
                    paths.push(full);
                }
            }
            return (paths, end + 1);
        }
        return (vec![prefix], at);
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        match byte {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The file of the longest module prefix of `path`.
fn resolve(by_module: &BTreeMap<Vec<String>, usize>, path: &[String]) -> Option<usize> {
    (0..=path.len())
        .rev()
        .find_map(|len| by_module.get(&path[..len]).copied())
}

fn is_ancestor(candidate: &[String], of: &[String]) -> bool {
    candidate.len() < of.len() && of.starts_with(candidate)
}

/// Tarjan's algorithm, iteratively indexed but recursive in shape; the
/// graphs are a few hundred nodes, far from any stack limit.
fn strongly_connected(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        components: Vec<Vec<usize>>,
    }
    fn visit(state: &mut State<'_>, node: usize) {
        state.index[node] = Some(state.next);
        state.low[node] = state.next;
        state.next += 1;
        state.stack.push(node);
        state.on_stack[node] = true;
        for &next in state.edges[node].iter() {
            match state.index[next] {
                None => {
                    visit(state, next);
                    state.low[node] = state.low[node].min(state.low[next]);
                }
                Some(index) if state.on_stack[next] => {
                    state.low[node] = state.low[node].min(index);
                }
                Some(_) => {}
            }
        }
        if Some(state.low[node]) == state.index[node] {
            let mut component = Vec::new();
            while let Some(member) = state.stack.pop() {
                state.on_stack[member] = false;
                component.push(member);
                if member == node {
                    break;
                }
            }
            state.components.push(component);
        }
    }
    let count = edges.len();
    let mut state = State {
        edges,
        index: vec![None; count],
        low: vec![0; count],
        on_stack: vec![false; count],
        stack: Vec::new(),
        next: 0,
        components: Vec::new(),
    };
    for node in 0..count {
        if state.index[node].is_none() {
            visit(&mut state, node);
        }
    }
    state.components
}
