//! The import rule of the house: the top-level modules are layers, and each may use only itself
//! and the layers before it, so the data flow runs one way. This test reads every source file
//! and fails on a path into a later layer, naming the file, the line and the layer it reached.

use std::path::{Path, PathBuf};

/// The layers, first to last. A module may use the ones before it, never the ones after.
const LAYERS: [&str; 9] = [
    "oci", "outcome", "http", "config", "probe", "report", "service", "server", "cli",
];

/// The layer a source file belongs to: its top-level module (a folder or a file of `src/`).
fn layer_of(relative: &Path) -> Option<usize> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    LAYERS.iter().position(|l| *l == name)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).expect("the source folder is readable");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<layer>` a line names, `$crate::` in macros included.
fn layers_named(line: &str) -> Vec<usize> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if let Some(layer) = LAYERS.iter().position(|l| *l == name) {
            found.push(layer);
        }
        rest = after;
    }
    found
}

/// The back-edges in the sources under `src`: (file, line number, the layer it reached).
fn back_edges(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let Some(own) = layer_of(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a source file is text");
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for layer in layers_named(line) {
                if layer > own {
                    found.push(format!(
                        "{}:{}: the {} layer uses the later {} layer: {}",
                        relative.display(),
                        number + 1,
                        LAYERS[own],
                        LAYERS[layer],
                        line.trim()
                    ));
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_module_uses_only_its_own_layer_and_the_ones_before_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = back_edges(&src);
    assert!(
        edges.is_empty(),
        "imports that run back up the layers:\n{}",
        edges.join("\n")
    );
}

#[test]
fn every_top_level_module_is_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub(crate) mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert_eq!(
        declared, LAYERS,
        "lib.rs declares the layers in their order"
    );
}

#[test]
fn a_path_into_a_later_layer_is_found() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let http = dir.path().join("http");
    std::fs::create_dir(&http).expect("mkdir");
    std::fs::write(
        http.join("client.rs"),
        "use crate::outcome::Failure;\n// crate::probe in a comment is fine\nuse crate::probe::Run;\n",
    )
    .expect("write");
    assert_eq!(
        back_edges(dir.path()),
        ["http/client.rs:3: the http layer uses the later probe layer: use crate::probe::Run;"]
    );
}
