//! The layering, read off the source: which room may import which (docs/ARCHITECTURE.md), the
//! console running no SQL and starting no process, and core rooms leaving the wording of their
//! remedies to the front ends.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each room's layer: a room imports only rooms of lower layers, so no two import each other.
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("units", 0),
    ("events", 0),
    ("checklist", 0),
    ("target", 1),
    ("db", 2),
    ("journal", 3),
    ("migrate", 3),
    ("monitor", 3),
    ("lint", 4),
    ("backup", 4),
    ("health", 4),
    ("hooks", 5),
    ("verify", 5),
    ("release", 6),
    ("tui", 7),
    ("config", 7),
    ("cli", 8),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The room a file belongs to: `src/<room>/...` or `src/<room>.rs`.
fn room_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let room = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(room, "lib" | "main")).then(|| room.to_owned())
}

/// The code of a file without comments (doc comments name other rooms freely).
fn code(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rooms a file names through `crate::<room>`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn layer(room: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(r, _)| *r == room)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| {
            panic!("room {room} has no layer: add it to LAYERS and docs/ARCHITECTURE.md")
        })
}

#[test]
fn every_room_imports_only_rooms_below_it() {
    let mut wrong = Vec::new();
    for file in rust_files(&src()) {
        let Some(room) = room_of(&file) else { continue };
        for imported in imports(&code(&file)) {
            if imported == room {
                continue;
            }
            if layer(&imported) >= layer(&room) {
                wrong.push(format!(
                    "{} ({room}, layer {}) imports {imported} (layer {})",
                    file.display(),
                    layer(&room),
                    layer(&imported)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn only_the_command_line_reads_the_config() {
    for file in rust_files(&src()) {
        let Some(room) = room_of(&file) else { continue };
        if room == "cli" || room == "config" {
            continue;
        }
        assert!(
            !imports(&code(&file)).contains("config"),
            "{} imports config: rooms define their settings, config builds them",
            file.display()
        );
    }
}

#[test]
fn the_console_runs_no_sql_and_starts_no_process() {
    for file in rust_files(&src().join("tui")) {
        let text = code(&file);
        for banned in [
            "tokio_postgres",
            "std::process",
            "tokio::process",
            "Command::new",
        ] {
            assert!(
                !text.contains(banned),
                "{} uses {banned}: the console renders workflows, the core runs them",
                file.display()
            );
        }
    }
}

#[test]
fn core_rooms_leave_the_wording_of_remedies_to_the_front_ends() {
    for file in rust_files(&src()) {
        let Some(room) = room_of(&file) else { continue };
        if matches!(room.as_str(), "cli" | "tui" | "config") {
            continue;
        }
        for (n, line) in code(&file).lines().enumerate() {
            // Command lines and flags belong to the CLI's wording of a Remedy.
            assert!(
                !line.contains("`pgdeck ") && !line.contains("pass --"),
                "{}:{}: {}",
                file.display(),
                n + 1,
                line.trim()
            );
        }
    }
}
