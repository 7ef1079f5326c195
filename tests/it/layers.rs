//! The library's top-level modules depend on each other one way: no module reaches, through
//! the `crate::…` paths of its code (comments and unit-test modules aside), back into one that
//! reaches it. A new cycle fails here with the modules in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ reads") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments and without a trailing `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let module = |path: &Path| {
        let first = path
            .strip_prefix(&src)
            .unwrap()
            .components()
            .next()
            .unwrap();
        first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned()
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module(f)).collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        if name == "tests.rs" {
            continue;
        }
        let from = module(file);
        let text = code(&std::fs::read_to_string(file).unwrap());
        for (at, _) in text.match_indices("crate::") {
            let to: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if to != from && modules.contains(&to) {
                uses.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // A module is in a cycle when it reaches itself.
    let reaches = |start: &String| {
        let mut seen = BTreeSet::new();
        let mut next: Vec<&String> = uses.get(start).into_iter().flatten().collect();
        while let Some(m) = next.pop() {
            if seen.insert(m.clone()) {
                next.extend(uses.get(m).into_iter().flatten());
            }
        }
        seen
    };
    let cyclic: Vec<(&String, BTreeSet<String>)> = uses
        .keys()
        .map(|m| (m, reaches(m)))
        .filter(|(m, reached)| reached.contains(*m))
        .collect();
    assert!(
        cyclic.is_empty(),
        "modules that reach back to themselves: {:?}",
        cyclic.iter().map(|(m, _)| m).collect::<Vec<_>>()
    );
    // The check sees the layering it guards.
    assert!(uses["server"].contains("service"), "{uses:?}");
    assert!(uses["http"].contains("request"), "{uses:?}");
}
