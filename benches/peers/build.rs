//! Hands the binary the versions it was built with, read from this project's `Cargo.lock`, and
//! the folder of the tower-oauth-guard source it depends on (so the run can name its commit).

use std::fmt::Write as _;
use std::path::Path;

/// The packages whose versions the footnotes print.
const REPORTED: &[&str] = &[
    "tower-oauth-guard",
    "jwt-authorizer",
    "huskarl-resource-server",
    "huskarl-core",
    "huskarl-crypto-native",
    "dpop-verifier",
    "jsonwebtoken",
    "aws-lc-rs",
    "aws-lc-sys",
    "ring",
    "p256",
    "axum",
    "tokio",
];

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&dir);
    println!("cargo::rerun-if-changed=Cargo.lock");
    println!("cargo::rerun-if-changed=Cargo.toml");

    let lock = std::fs::read_to_string(dir.join("Cargo.lock")).expect("Cargo.lock is committed");
    println!("cargo::rustc-env=PEERS_VERSIONS={}", versions(&lock));

    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let source = guard_path(&manifest).map_or_else(String::new, |p| {
        let path = dir.join(p);
        let path = path.canonicalize().unwrap_or(path);
        path.to_string_lossy().into_owned()
    });
    println!("cargo::rustc-env=PEERS_GUARD_SOURCE={source}");
}

/// `name version[ version]; ...` for the packages of [`REPORTED`], in that order. A lock file
/// lists each package as a `[[package]]` table whose `name` line precedes its `version` line.
fn versions(lock: &str) -> String {
    let mut found: Vec<(&str, Vec<&str>)> = REPORTED.iter().map(|n| (*n, Vec::new())).collect();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = quoted(line, "name = ") {
            name = Some(n);
        } else if let (Some(v), Some(n)) = (quoted(line, "version = "), name.take())
            && let Some((_, versions)) = found.iter_mut().find(|(r, _)| *r == n)
        {
            versions.push(v);
        }
    }
    let mut out = String::new();
    for (name, versions) in found.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = write!(
            out,
            "{}{name} {}",
            if out.is_empty() { "" } else { "; " },
            versions.join(" ")
        );
    }
    out
}

fn quoted<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.strip_prefix(key)?.strip_prefix('"')?.strip_suffix('"')
}

/// The `path` of the `tower-oauth-guard` dependency line.
fn guard_path(manifest: &str) -> Option<&str> {
    let line = manifest
        .lines()
        .find(|l| l.starts_with("tower-oauth-guard"))?;
    let rest = &line[line.find("path = \"")? + "path = \"".len()..];
    Some(&rest[..rest.find('"')?])
}
