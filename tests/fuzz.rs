//! Property tests over the parsers bad input reaches first: statement splitting, the lint, the
//! config file and the database URL. Inputs are arbitrary text and SQL-shaped noise (quotes,
//! dollar quotes, comments, semicolons, transaction control, multi-byte characters). Properties:
//! no panic, and the splitter's statements are slices of the input, in order, at the line and
//! column they claim. `PROPTEST_CASES` raises the budget (default here: 1,000 per property).

use pgdeck::config::Overrides;
use pgdeck::lint::{LintSettings, lint_sql};
use pgdeck::migrate::script::Script;
use pgdeck::target::DbTarget;
use proptest::prelude::*;

const FRAGMENTS: &[&str] = &[
    "CREATE TABLE t (id int)",
    "ALTER TABLE \"User\" ADD COLUMN x text NOT NULL DEFAULT 'a;b'",
    "CREATE INDEX CONCURRENTLY i ON t (id)",
    "DROP TABLE IF EXISTS t",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "VACUUM t",
    "DO $$ BEGIN PERFORM 1; END $$",
    "$tag$ ; ' \" $tag$",
    "'it''s; fine'",
    "\"quoted;ident\"",
    "-- comment; with semicolon\n",
    "/* block ; /* nested */ */",
    ";",
    ";;",
    "\n",
    "\r\n",
    "\u{feff}",
    "é",
    "日本",
    "'",
    "\"",
    "$$",
    "(",
    ")",
    "E'\\''",
    "COPY t FROM stdin",
    "\\.",
    "SELECT pg_sleep(0.1)",
];

fn sqlish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(FRAGMENTS).prop_map(str::to_owned),
            1 => "[ -~]{0,12}",
            1 => "\\PC{0,6}",
        ],
        0..30,
    )
    .prop_map(|parts| parts.join(" "))
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The 1-based line and character column of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn check_split(sql: &str) -> Result<(), TestCaseError> {
    let script = Script::parse(sql);
    let mut last_end = 0;
    for s in &script.statements {
        prop_assert!(s.offset >= last_end, "statements out of order in {sql:?}");
        prop_assert!(
            sql.get(s.offset..s.offset + s.text.len()) == Some(s.text.as_str()),
            "statement {:?} is not the input's text at {}",
            s.text,
            s.offset
        );
        prop_assert_eq!((s.line, s.column), position(sql, s.offset));
        last_end = s.offset + s.text.len();
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn splitting_sql_shaped_noise_never_panics_and_keeps_positions(sql in sqlish()) {
        check_split(&sql)?;
    }

    #[test]
    fn splitting_arbitrary_text_never_panics(sql in "\\PC{0,200}") {
        check_split(&sql)?;
    }

    #[test]
    fn linting_never_panics(sql in sqlish()) {
        let lint = lint_sql("fuzz.sql", &sql, &LintSettings::default(), &pgdeck::lint::Sizes::new());
        for f in &lint.findings {
            prop_assert!(f.line >= 1);
        }
    }

    #[test]
    fn a_config_file_is_read_or_refused_with_an_input_error(text in prop_oneof![
        "\\PC{0,200}",
        prop::collection::vec(prop::sample::select(&[
            "[environments.x]\n", "database_url = \"postgresql://u@h/db\"\n", "protected = true\n",
            "lock_timeout = \"5s\"\n", "lock_timeout = \"soon\"\n", "[environments.x.lint]\n",
            "include = [\"ban-drop-column\"]\n", "[environments.x.health]\n", "window = \"1s\"\n",
            "[[environments.x.health.endpoints]]\n", "url = \"http://h/\"\n", "[environments.x.hooks]\n",
            "restart = \"true\"\n", "default_environment = \"x\"\n", "= =\n", "[[\n", "\"\n",
        ][..]), 0..12).prop_map(|v| v.concat()),
    ]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgdeck.toml");
        std::fs::write(&path, &text).unwrap();
        let overrides = Overrides { config: Some(path), ..Default::default() };
        let no_vars = |_: &str| -> Option<String> { None };
        if let Err(e) = pgdeck::config::resolve(&overrides, &no_vars) {
            prop_assert_eq!(e.kind, pgdeck::error::ErrorKind::Input);
            prop_assert!(!e.cause.contains('\n') || e.cause.lines().count() < 5);
        }
    }

    #[test]
    fn a_migrations_folder_is_read_or_refused_with_an_input_error(
        entries in proptest::collection::vec(
            (
                prop_oneof![
                    "[0-9]{14}_[a-z_]{1,10}",
                    "\\PC{1,20}",
                    "\\.[a-z]{1,6}",
                    "[0-9]{14}_[a-z]{1,4}[\\x00-\\x1f\\x7f]",
                ],
                proptest::collection::vec(any::<u8>(), 0..64),
                0u8..5,
            ),
            0..6,
        ),
        lock in proptest::option::of("\\PC{0,40}"),
    ) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(lock) = &lock {
            std::fs::write(dir.path().join("migration_lock.toml"), lock).unwrap();
        }
        for (name, bytes, shape) in &entries {
            // Names the file system refuses (a '/', a NUL) are not a folder's to hold.
            if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
                continue;
            }
            let folder = dir.path().join(name);
            if std::fs::create_dir(&folder).is_err() {
                continue;
            }
            let script = folder.join("migration.sql");
            match shape {
                0 => std::fs::write(&script, bytes).unwrap(),
                1 => {
                    std::fs::write(&script, bytes).unwrap();
                    std::fs::write(folder.join("down.sql"), bytes).unwrap();
                }
                2 => nix::unistd::mkfifo(&script, nix::sys::stat::Mode::S_IRWXU).unwrap(),
                3 => std::os::unix::fs::symlink("/etc/hostname", &script).unwrap(),
                _ => {}
            }
        }
        match pgdeck::migrate::MigrationsDir::load(dir.path()) {
            Ok(d) => prop_assert!(d.migrations.iter().all(|m| !m.name.starts_with('.'))),
            Err(e) => prop_assert_eq!(e.kind, pgdeck::error::ErrorKind::Input, "{}", e.cause),
        }
    }

    #[test]
    fn a_url_is_parsed_or_refused_with_an_input_error(url in prop_oneof![
        "\\PC{0,80}",
        "postgres(ql)?://[a-z:@%]{0,12}[a-z0-9.\\[\\]:]{0,15}(/[a-z%]{0,8})?(\\?[a-z_=&%]{0,30})?",
    ]) {
        let no_vars = |_: &str| -> Option<String> { None };
        if let Err(e) = DbTarget::from_url(&url, &no_vars) {
            prop_assert_eq!(e.kind, pgdeck::error::ErrorKind::Input);
        }
    }
}
