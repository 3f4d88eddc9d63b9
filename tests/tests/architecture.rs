//! The architecture's absences, held as tests (ARCHITECTURE.md,
//! "Invariants"): the file-level dependency graph of each crate's product
//! code, read from its sources by `palisade_tests::module_graph`, has no
//! circles, and the arrows that must not exist do not.
#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::path::Path;

use palisade_tests::module_graph::ModuleGraph;

fn graph(krate: &str) -> ModuleGraph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src");
    ModuleGraph::read(&src).unwrap()
}

/// Every arrow from a file matching `from` to a file matching `to`, as
/// `from -> to` lines.
fn arrows(
    graph: &ModuleGraph,
    from: impl Fn(&str) -> bool,
    to: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut found = Vec::new();
    for (index, file) in graph.files.iter().enumerate() {
        if !from(&file.path) {
            continue;
        }
        for target in graph.dependencies_of(index) {
            if to(target) {
                found.push(format!("{} -> {target}", file.path));
            }
        }
    }
    found
}

/// The redesign of issue 13 is landing in steps; until it is done, what is
/// still wrong is written here, and the test fails both on anything new and
/// on anything fixed but still listed, so the list only shrinks. An empty
/// list is the invariant ARCHITECTURE.md states.
fn assert_only_known(what: &str, mut found: Vec<String>, known: &[&str]) {
    found.sort();
    let new: Vec<&String> = found
        .iter()
        .filter(|item| !known.contains(&item.as_str()))
        .collect();
    let fixed: Vec<&&str> = known
        .iter()
        .filter(|item| !found.iter().any(|f| f == **item))
        .collect();
    assert!(
        new.is_empty() && fixed.is_empty(),
        "{what}\nnew (make the arrows one-way): {new:#?}\n\
         fixed (remove them from the known list): {fixed:#?}"
    );
}

fn files_in_circles(krate: &str) -> Vec<String> {
    graph(krate)
        .circles()
        .into_iter()
        .enumerate()
        .flat_map(|(number, circle)| {
            circle
                .into_iter()
                .map(move |file| format!("circle {number}: {file}"))
        })
        .collect()
}

#[test]
fn the_agent_has_no_import_circles() {
    assert_only_known(
        "agent/src has import circles (files that depend on each other, directly or around a loop)",
        files_in_circles("agent"),
        KNOWN_AGENT_CIRCLES,
    );
}

const KNOWN_AGENT_CIRCLES: &[&str] = &[];

#[test]
fn the_collector_has_no_import_circles() {
    assert_only_known(
        "collector/src has import circles (files that depend on each other, directly or around a loop)",
        files_in_circles("collector"),
        KNOWN_COLLECTOR_CIRCLES,
    );
}

const KNOWN_COLLECTOR_CIRCLES: &[&str] = &[];

#[test]
fn the_shared_crate_has_no_import_circles() {
    assert_only_known(
        "shared/src has import circles",
        files_in_circles("shared"),
        &[],
    );
}

#[test]
fn nothing_in_the_agent_depends_on_the_command_line() {
    let graph = graph("agent");
    let found = arrows(
        &graph,
        |from| !from.starts_with("cli/"),
        |to| to.starts_with("cli/"),
    );
    assert_only_known("only main.rs may use cli/", found, &[]);
}

#[test]
fn the_store_knows_no_http_and_no_ingest() {
    let graph = graph("collector");
    let found = arrows(
        &graph,
        |from| from.starts_with("store/"),
        |to| {
            ["server/", "web/", "ingest/", "cli.rs"]
                .iter()
                .any(|outside| to.starts_with(outside))
        },
    );
    assert_only_known("the store must stand alone", found, &[]);
}

#[test]
fn the_module_graph_sees_a_circle_when_there_is_one() {
    // The reader itself, on a crate made for it: a -> b -> a is a circle,
    // a child leaning on its parent (`super::`) is not.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("c")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\npub mod c;\n").unwrap();
    std::fs::write(
        src.join("a.rs"),
        "use crate::b::{B, self};\npub struct A;\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B(crate::a::A);\n").unwrap();
    std::fs::write(
        src.join("c/mod.rs"),
        "mod d;\npub use d::D;\npub struct C;\n",
    )
    .unwrap();
    std::fs::write(src.join("c/d.rs"), "use super::C;\npub struct D(C);\n").unwrap();
    let graph = ModuleGraph::read(src).unwrap();
    assert_eq!(
        graph.circles(),
        vec![vec!["a.rs".to_owned(), "b.rs".to_owned()]]
    );
    let c = graph.index_of("c/mod.rs").unwrap();
    assert_eq!(graph.dependencies_of(c), vec!["c/d.rs"]);
}

/// Past this many lines a product file is hard to hold in one's head; the
/// few that stay longer say why on their first line.
const LONG_FILE_LINES: usize = 600;
const LONG_FILE_MARKER: &str = "//! Long file: ";

#[test]
fn no_product_file_is_long_without_saying_why() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut unexplained = Vec::new();
    for dir in ["agent/src", "collector/src", "shared/src", "tests/src"] {
        let mut files = Vec::new();
        collect_rs(&root.join(dir), &mut files);
        for path in files {
            // Named from the workspace root: the absolute path runs through
            // this crate's own `tests/` folder and would match below.
            let relative = path.strip_prefix(&root).unwrap_or(&path);
            let name = relative.to_string_lossy().replace('\\', "/");
            if name.ends_with("/tests.rs") || name.contains("/tests/") {
                continue; // unit-test files are tables of cases, not product code
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = text.lines().count();
            if lines > LONG_FILE_LINES && !text.starts_with(LONG_FILE_MARKER) {
                unexplained.push(name);
            }
        }
    }
    assert_only_known(
        &format!(
            "over {LONG_FILE_LINES} lines: split these, or start them with `{LONG_FILE_MARKER}<why>`"
        ),
        unexplained,
        KNOWN_LONG_FILES,
    );
}

const KNOWN_LONG_FILES: &[&str] = &[];

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// A rule's folder (`checks/<rule>/`) keeps its OS access in the probe files
/// and its enforcer; the evaluator and the parsers are pure, so they are
/// tested on captured output on any OS and never reach the machine.
/// An enforcer split per OS (`enforce_macos.rs`) counts as the enforcer.
const FILES_THAT_MAY_REACH_THE_OS: &[&str] = &[
    "mod.rs",
    "linux.rs",
    "windows.rs",
    "macos.rs",
    "enforce.rs",
    "enforce_macos.rs",
    "enforce_windows.rs",
];

#[test]
fn evaluators_and_parsers_never_touch_the_os() {
    let graph = graph("agent");
    let found = arrows(
        &graph,
        |from| {
            from.strip_prefix("checks/").is_some_and(|inside| {
                let file = inside.rsplit('/').next().unwrap_or(inside);
                !FILES_THAT_MAY_REACH_THE_OS.contains(&file)
            })
        },
        |to| to.starts_with("sys/"),
    );
    assert_only_known(
        "evaluators and parsers must import nothing from sys/",
        found,
        &[],
    );
}

/// Changes that the command line, the admin API and the dashboard all make
/// are written once, in `collector/src/operations.rs` (validation, store
/// call, audit entry), so no front end can skip the audit or check less.
/// The store methods that make them are called from there and nowhere else.
const CHANGES_WRITTEN_ONCE: &[&str] = &[
    ".revoke_device(",
    ".create_enrollment_secret(",
    ".revoke_enrollment_secret(",
    "secrets::generate(\"pls\")",
];

#[test]
fn revoking_a_device_and_creating_a_secret_are_written_once() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../collector/src");
    let mut files = Vec::new();
    collect_rs(&root, &mut files);
    let mut callers = Vec::new();
    for path in files {
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        if name.starts_with("store/") || name.ends_with("/tests.rs") {
            continue; // the store defines them and tests them
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for call in CHANGES_WRITTEN_ONCE {
            if text.contains(call) {
                callers.push(format!("{name}: {call}"));
            }
        }
    }
    callers.sort();
    assert_eq!(
        callers,
        [
            "operations.rs: .create_enrollment_secret(",
            "operations.rs: .revoke_device(",
            "operations.rs: .revoke_enrollment_secret(",
            "operations.rs: secrets::generate(\"pls\")",
        ],
        "these changes must go through collector/src/operations.rs"
    );
}
