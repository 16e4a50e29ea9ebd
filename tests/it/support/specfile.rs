//! Spec files written by tests, and the server conversations a mock prints.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

/// Writes `spec` as `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, spec: &Json) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(spec).unwrap()).unwrap();
    path
}

/// The requests' methods in a mock server's stdout (one JSON line per
/// connection), in the order of the lines.
pub fn requested_methods(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .flat_map(|conv| conv["messages"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m["request"][2].as_str().map(str::to_owned))
        .collect()
}
