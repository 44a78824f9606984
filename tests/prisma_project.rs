//! A Prisma team's first day: the real binary in a project laid out as Prisma lays it out
//! (`prisma/schema.prisma` with a `directUrl`, `prisma/migrations/`, `.env`, `package.json`),
//! with no config file and no flags, in a controlled environment (no inherited `DATABASE_URL`,
//! `DIRECT_URL`, `PG*`), against a real cluster; and the shell completions and man page.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use pgdeck::cli::exit;

fn code(c: u8) -> i32 {
    i32::from(c)
}

/// The binary, in `dir`, with nothing of the caller's connection settings.
fn pgdeck_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = pgdeck_cmd();
    cmd.current_dir(dir).args(args);
    cmd
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn completions_generate_for_every_shell_from_the_parsers_own_definition() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _pgdeck"),
        ("zsh", "#compdef pgdeck"),
        ("fish", "complete -c pgdeck"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion:arg-completer[pgdeck]"),
    ] {
        let r = run(pgdeck_in(dir.path(), &["completions", shell]));
        assert_eq!(r.code, 0, "{shell}: {r:?}");
        assert!(r.stdout.contains(marker), "{shell}:\n{}", r.stdout);
        for command in ["deploy", "status", "resolve", "init", "man", "completions"] {
            assert!(r.stdout.contains(command), "{shell} lacks {command}");
        }
        // Each script is valid for its shell, where the shell is installed.
        let check = match shell {
            "bash" => Some("bash"),
            "zsh" => Some("zsh"),
            "fish" => Some("fish"),
            _ => None,
        };
        if let Some(sh) = check.filter(|sh| has(sh)) {
            let file = dir.path().join(format!("pgdeck.{shell}"));
            std::fs::write(&file, &r.stdout).unwrap();
            let out = Command::new(sh).arg("-n").arg(&file).output().unwrap();
            assert!(
                out.status.success(),
                "{sh} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Bash completes a command and the shells themselves.
    let script = run(pgdeck_in(dir.path(), &["completions", "bash"])).stdout;
    let file = dir.path().join("pgdeck.bash");
    std::fs::write(&file, script).unwrap();
    // As bash calls it: the words so far, the index of the one completed, and the function's
    // arguments (the command, the current word, the one before).
    let complete = |words: &str, cword: usize| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
                 _pgdeck pgdeck \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                 echo \"${{COMPREPLY[@]}}\"",
                file.display()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = complete("pgdeck de", 1);
    assert!(
        first.contains("deploy") && first.contains("demo"),
        "{first}"
    );
    let shells = complete("pgdeck completions ''", 2);
    assert!(
        ["bash", "zsh", "fish", "powershell"]
            .iter()
            .all(|s| shells.contains(s)),
        "{shells}"
    );
    run(pgdeck_in(dir.path(), &["completions", "tcsh"])).assert_clean_error(code(exit::USAGE));
}

#[test]
fn the_man_page_renders_with_every_command_exit_code_variable_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(pgdeck_in(dir.path(), &["man"]));
    assert_eq!(r.code, 0, "{r:?}");
    let page = &r.stdout;
    assert!(page.contains(".TH pgdeck 1"), "{page}");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH FILES",
    ] {
        assert!(page.contains(section), "no {section}");
    }
    for command in [
        "status",
        "deploy",
        "resolve",
        "reset",
        "init",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!("pgdeck\\-{command}(1)")),
            "{command}"
        );
    }
    for (code, _) in exit::MEANINGS {
        assert!(
            page.contains(&format!("\\fB{code}\\fR")),
            "exit code {code}"
        );
    }
    for name in [
        "DATABASE_URL",
        "DIRECT_URL",
        "PGDECK_CONFIG",
        ".env, prisma/.env",
    ] {
        assert!(page.contains(name), "{name}");
    }
    // groff reads it without a warning, and renders each section.
    if has("groff") {
        let file = dir.path().join("pgdeck.1");
        std::fs::write(&file, page).unwrap();
        let out = Command::new("groff")
            .args(["-man", "-Tascii", "-ww", "-P", "-cbou"])
            .arg(&file)
            .output()
            .unwrap();
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && warnings.is_empty(), "{warnings}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("EXIT STATUS") && text.contains("--database-url"),
            "{text}"
        );
    }
    // One command's own page, with the global flags it accepts.
    let deploy = run(pgdeck_in(dir.path(), &["man", "deploy"]));
    assert_eq!(deploy.code, 0, "{deploy:?}");
    assert!(
        deploy.stdout.contains(".TH pgdeck-deploy 1"),
        "{}",
        deploy.stdout
    );
    assert!(
        deploy.stdout.contains("\\-\\-confirm") && deploy.stdout.contains("\\-\\-database\\-url"),
        "{}",
        deploy.stdout
    );
    let wrong = run(pgdeck_in(dir.path(), &["man", "deplyo"]));
    wrong.assert_clean_error(code(exit::USAGE));
    assert!(wrong.stderr.contains("deploy"), "{}", wrong.stderr);
}

/// A project laid out as a Prisma project: `prisma/schema.prisma` (with `directUrl`),
/// `prisma/migrations/`, `package.json`; the `.env` is written by each test.
struct Project {
    dir: tempfile::TempDir,
}

const SCHEMA: &str = r#"// This is your Prisma schema file
generator client {
  provider = "prisma-client-js"
}

datasource db {
  provider  = "postgresql"
  url       = env("DATABASE_URL") // through PgBouncer
  directUrl = env("DIRECT_URL")
}

model User {
  id    Int    @id @default(autoincrement())
  email String @unique
}
"#;

impl Project {
    fn prisma() -> Project {
        let p = Project::empty();
        p.write("prisma/schema.prisma", SCHEMA);
        p.write(
            "package.json",
            r#"{"name": "app", "private": true, "scripts": {"migrate": "prisma migrate deploy"}, "prisma": {"seed": "tsx prisma/seed.ts"}}"#,
        );
        p.migration(
            "prisma/migrations",
            "20250101000000_init",
            "CREATE TABLE \"User\" (id serial PRIMARY KEY, email text NOT NULL);",
        );
        p.migration(
            "prisma/migrations",
            "20250102000000_email_index",
            "CREATE UNIQUE INDEX \"User_email_key\" ON \"User\"(email);",
        );
        p
    }

    fn empty() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, file: &str, text: &str) {
        let path = self.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn migration(&self, folder: &str, name: &str, sql: &str) {
        self.write(
            &format!("{folder}/migration_lock.toml"),
            "# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = \"postgresql\"\n",
        );
        self.write(&format!("{folder}/{name}/migration.sql"), sql);
    }

    /// `.env` (or another file) with these variables, quoted as Prisma's own `.env` quotes them.
    fn env_file(&self, file: &str, vars: &[(&str, String)]) {
        let text: String = vars.iter().map(|(k, v)| format!("{k}=\"{v}\"\n")).collect();
        self.write(
            file,
            &format!(
                "# Environment variables declared in this file are available to Prisma\n{text}"
            ),
        );
    }

    fn pgdeck(&self, args: &[&str]) -> Command {
        pgdeck_in(self.path(), args)
    }

    fn run(&self, args: &[&str]) -> Run {
        run(self.pgdeck(args))
    }

    /// `status --json`, parsed.
    fn status_json(&self) -> (i32, serde_json::Value) {
        let r = self.run(&["status", "--json"]);
        let v = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
        (r.code, v)
    }
}

async fn ledger_exists(db: &TestDb) -> bool {
    db.table_exists("_prisma_migrations").await
}

#[tokio::test]
async fn status_and_deploy_run_with_no_flags_and_no_terminal_through_the_direct_url() {
    // DATABASE_URL is the application's (pooled) URL; DIRECT_URL the one migrations go
    // through. Two databases tell them apart on the server.
    let pooled = fresh_db("prisma_pooled").await;
    let direct = fresh_db("prisma_direct").await;
    let p = Project::prisma();
    p.env_file(
        ".env",
        &[("DATABASE_URL", pooled.url()), ("DIRECT_URL", direct.url())],
    );

    let status = p.run(&["status"]);
    assert_eq!(status.code, code(exit::PENDING), "{status:?}");
    assert!(
        status.stdout.contains(
            "connection   $DIRECT_URL from .env, Prisma's directUrl in prisma/schema.prisma"
        ),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("migrations   prisma/migrations (beside prisma/schema.prisma)"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains(&direct.name) && !status.stdout.contains(&pooled.name),
        "{}",
        status.stdout
    );

    // No --yes, stdin not a terminal: a forward deploy on an unprotected environment runs.
    let deploy = p.run(&["deploy"]);
    assert_eq!(deploy.code, 0, "{deploy:?}");
    assert!(
        deploy.stdout.contains("applied 2 migration(s)"),
        "{}",
        deploy.stdout
    );
    let rows = direct.ledger().await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.finished && !r.rolled_back));
    assert!(direct.table_exists("User").await);
    assert!(
        !ledger_exists(&pooled).await,
        "the ledger landed in the pooled database"
    );
    assert!(!pooled.table_exists("User").await);

    let (code_after, v) = p.status_json();
    assert_eq!(code_after, 0, "{v}");
    assert_eq!(v["environment"], "default");
    let c = &v["connection"];
    assert_eq!(c["named_by"]["kind"], "prisma_direct_url", "{c}");
    assert_eq!(c["named_by"]["schema"], "prisma/schema.prisma", "{c}");
    assert_eq!(c["variable"], "DIRECT_URL");
    assert_eq!(c["file"], ".env");
    assert!(c["direct_unset"].is_null());
    assert_eq!(v["migrations_dir"]["path"], "prisma/migrations");
    assert_eq!(v["migrations_dir"]["source"]["source"], "prisma_schema");

    // resolve asks nothing either, and takes the lock and writes the ledger on the direct URL.
    p.migration(
        "prisma/migrations",
        "20250103000000_by_hand",
        "ALTER TABLE \"User\" ADD COLUMN name text;",
    );
    direct
        .exec("ALTER TABLE \"User\" ADD COLUMN name text")
        .await;
    let resolve = p.run(&["resolve", "--applied", "20250103000000_by_hand"]);
    assert_eq!(resolve.code, 0, "{resolve:?}");
    assert_eq!(direct.ledger().await.len(), 3);
    assert!(!ledger_exists(&pooled).await);
    assert_eq!(p.run(&["status"]).code, 0);

    // What destroys keeps asking: reset without a terminal or --yes is refused.
    p.run(&["reset"]).assert_clean_error(code(exit::REFUSED));
    assert!(direct.table_exists("User").await);
}

#[tokio::test]
async fn with_the_direct_variable_unset_status_reads_the_pooled_url_and_changes_are_refused() {
    let pooled = fresh_db("prisma_unset").await;
    let p = Project::prisma();
    p.env_file(".env", &[("DATABASE_URL", pooled.url())]);

    let status = p.run(&["status"]);
    assert_eq!(status.code, code(exit::PENDING), "{status:?}");
    assert!(
        status
            .stdout
            .contains("Prisma's directUrl names $DIRECT_URL, which is not set"),
        "{}",
        status.stdout
    );
    let (_, v) = p.status_json();
    assert_eq!(v["connection"]["direct_unset"], "DIRECT_URL");
    assert_eq!(v["connection"]["named_by"]["kind"], "prisma_url");
    assert_eq!(v["connection"]["variable"], "DATABASE_URL");

    for args in [
        &["deploy"][..],
        &["resolve", "--applied", "20250101000000_init"],
        &["reset", "--yes"],
    ] {
        let r = p.run(args);
        r.assert_clean_error(code(exit::USAGE));
        assert!(
            r.stderr.contains("needs the direct connection") && r.stderr.contains("DIRECT_URL"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(
        !ledger_exists(&pooled).await,
        "a change went through the pooled URL"
    );
}

#[tokio::test]
async fn a_real_environment_variable_wins_over_the_env_files_and_the_files_must_agree() {
    let from_file = fresh_db("prisma_env_file").await;
    let from_env = fresh_db("prisma_env_real").await;
    let p = Project::prisma();
    p.env_file(
        ".env",
        &[
            ("DATABASE_URL", from_file.url()),
            ("DIRECT_URL", from_file.url()),
        ],
    );

    let mut deploy = p.pgdeck(&["deploy"]);
    deploy.env("DIRECT_URL", from_env.url());
    let r = run(deploy);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(from_env.ledger().await.len(), 2);
    assert!(!ledger_exists(&from_file).await);
    let mut status = p.pgdeck(&["status"]);
    status.env("DIRECT_URL", from_env.url());
    let r = run(status);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("$DIRECT_URL from the environment"),
        "{}",
        r.stdout
    );

    // prisma/.env is read too, after .env; the same variable set differently in both is
    // an error, as it is for Prisma, and the password is never shown.
    std::fs::remove_file(p.path().join(".env")).unwrap();
    p.env_file("prisma/.env", &[("DIRECT_URL", from_env.url())]);
    let (c, v) = p.status_json();
    assert_eq!(c, 0, "{v}");
    assert_eq!(v["connection"]["file"], "prisma/.env");
    p.write(
        ".env",
        "DIRECT_URL=postgresql://app:hunter22@db.internal:5432/other\n",
    );
    let r = p.run(&["status"]);
    r.assert_clean_error(code(exit::USAGE));
    assert!(
        r.stderr
            .contains("DIRECT_URL is set differently in .env and prisma/.env"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("hunter22"), "{}", r.stderr);
}

#[tokio::test]
async fn the_migrations_folder_is_found_as_prisma_finds_it_and_status_says_why() {
    let db = fresh_db("prisma_folders").await;
    let with_env = |p: &Project| p.env_file(".env", &[("DATABASE_URL", db.url())]);
    let folder = |p: &Project| {
        let (code, v) = p.status_json();
        assert!(code == 0 || code == i32::from(exit::PENDING), "{code}: {v}");
        (
            v["migrations_dir"]["path"].as_str().unwrap().to_owned(),
            v["migrations_dir"]["source"].clone(),
            v["migrations_dir"]["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };

    // An empty ./migrations no longer hides prisma/migrations (no schema here).
    let p = Project::empty();
    with_env(&p);
    std::fs::create_dir(p.path().join("migrations")).unwrap();
    p.migration(
        "prisma/migrations",
        "20250101000000_a",
        "CREATE TABLE a (id int);",
    );
    let (path, source, why) = folder(&p);
    assert_eq!(path, "prisma/migrations");
    assert_eq!(source["source"], "prisma_folder");
    assert_eq!(source["migrations_empty"], true);
    assert!(why.contains("./migrations holds no migration"), "{why}");
    let human = p.run(&["status"]);
    assert!(
        human.stdout.contains(
            "migrations   prisma/migrations (Prisma's folder: ./migrations holds no migration)"
        ),
        "{}",
        human.stdout
    );

    // package.json's prisma.schema: the folder beside that schema, over prisma/.
    let p = Project::empty();
    with_env(&p);
    p.write(
        "package.json",
        r#"{"name": "api", "prisma": {"schema": "db/schema.prisma"}}"#,
    );
    p.write(
        "db/schema.prisma",
        "datasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n}\n",
    );
    p.migration(
        "db/migrations",
        "20250101000000_a",
        "CREATE TABLE a (id int);",
    );
    p.migration(
        "prisma/migrations",
        "20250101000000_b",
        "CREATE TABLE b (id int);",
    );
    let (path, source, _) = folder(&p);
    assert_eq!(path, "db/migrations");
    assert_eq!(source["source"], "package_json");
    assert_eq!(source["schema"], "db/schema.prisma");

    // prisma.config.ts with a plain string literal.
    let p = Project::empty();
    with_env(&p);
    p.write(
        "prisma.config.ts",
        "import 'dotenv/config';\nimport { defineConfig } from 'prisma/config';\n\nexport default defineConfig({\n  schema: 'prisma/schema.prisma',\n  migrations: { path: 'database/migrations' },\n});\n",
    );
    p.write(
        "prisma/schema.prisma",
        "datasource db {\n  provider = \"postgresql\"\n}\n",
    );
    p.migration(
        "database/migrations",
        "20250101000000_a",
        "CREATE TABLE a (id int);",
    );
    let (path, source, _) = folder(&p);
    assert_eq!(path, "database/migrations");
    assert_eq!(source["source"], "prisma_config");
    assert_eq!(source["file"], "prisma.config.ts");

    // Anything but a literal is an error that asks for the folder.
    p.write(
        "prisma.config.ts",
        "import path from 'node:path';\nexport default defineConfig({\n  migrations: { path: path.join(__dirname, 'database', 'migrations') },\n});\n",
    );
    let r = p.run(&["status"]);
    r.assert_clean_error(code(exit::USAGE));
    assert!(
        r.stderr.contains(
            "prisma.config.ts sets migrations.path to something other than a plain string"
        ) && r.stderr.contains("--migrations DIR"),
        "{}",
        r.stderr
    );
    // ... which --migrations answers.
    let r = p.run(&["--migrations", "database/migrations", "status", "--json"]);
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(v["migrations_dir"]["source"]["source"], "command_line");
}

#[tokio::test]
async fn init_writes_a_config_the_next_command_reads_and_never_replaces_one() {
    let dev = fresh_db("prisma_init_dev").await;
    let prod = fresh_db("prisma_init_prod").await;
    let p = Project::prisma();
    p.env_file(
        ".env",
        &[
            (
                "DATABASE_URL",
                "postgresql://app@pooler.invalid:6432/app".to_owned(),
            ),
            ("DIRECT_URL", dev.url()),
        ],
    );

    let init = p.run(&["init"]);
    assert_eq!(init.code, 0, "{init:?}");
    assert!(init.stdout.contains("wrote pgdeck.toml"), "{}", init.stdout);
    assert!(
        init.stdout.contains("$PRODUCTION_DIRECT_URL (protected)"),
        "{}",
        init.stdout
    );
    let written = std::fs::read(p.path().join("pgdeck.toml")).unwrap();
    let text = String::from_utf8(written.clone()).unwrap();
    assert!(text.contains("database_url_env = \"DIRECT_URL\""), "{text}");
    assert!(
        !text.contains(&dev.name),
        "a URL was copied into the file:\n{text}"
    );

    // The next command reads it: development from DIRECT_URL in .env.
    let (c, v) = p.status_json();
    assert_eq!(c, code(exit::PENDING), "{v}");
    assert_eq!(v["environment"], "development");
    assert_eq!(v["config"], "pgdeck.toml");
    assert_eq!(v["connection"]["named_by"]["kind"], "config");
    assert_eq!(v["connection"]["named_by"]["key"], "database_url_env");
    assert_eq!(v["connection"]["variable"], "DIRECT_URL");
    assert_eq!(v["connection"]["file"], ".env");
    assert_eq!(v["migrations_dir"]["path"], "prisma/migrations");
    assert_eq!(p.run(&["deploy"]).code, 0);
    assert_eq!(dev.ledger().await.len(), 2);

    // Production reads its own variable and is protected: a deploy needs the name typed.
    let prod_run = |args: &[&str]| {
        let mut all = vec!["--env", "production"];
        all.extend_from_slice(args);
        let mut cmd = p.pgdeck(&all);
        cmd.env("PRODUCTION_DIRECT_URL", prod.url());
        run(cmd)
    };
    let (_, v) = {
        let r = prod_run(&["status", "--json"]);
        (
            r.code,
            serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap(),
        )
    };
    assert_eq!(v["connection"]["variable"], "PRODUCTION_DIRECT_URL");
    let refused = prod_run(&["deploy"]);
    refused.assert_clean_error(code(exit::REFUSED));
    assert!(
        refused.stderr.contains("no backup of"),
        "{}",
        refused.stderr
    );
    let refused = prod_run(&[
        "deploy",
        "--without-backup",
        "the first day, none yet",
        "--allow",
        "require-concurrent-index-creation",
        "--reason",
        "the table is created by the same deploy",
    ]);
    refused.assert_clean_error(code(exit::REFUSED));
    assert!(
        refused
            .stderr
            .contains("environment 'production' is protected")
            && refused.stderr.contains(&format!("--confirm {}", prod.name)),
        "{}",
        refused.stderr
    );
    assert!(!ledger_exists(&prod).await);
    let unset = p.run(&["--env", "production", "status"]);
    unset.assert_clean_error(code(exit::USAGE));
    assert!(
        unset
            .stderr
            .contains("$PRODUCTION_DIRECT_URL, which is not set"),
        "{}",
        unset.stderr
    );

    // A second init refuses and leaves the file as it was.
    let again = p.run(&["init"]);
    again.assert_clean_error(code(exit::USAGE));
    assert!(
        again.stderr.contains("a file is already there"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read(p.path().join("pgdeck.toml")).unwrap(),
        written
    );

    // Nor does it write through a symbolic link (dangling or not) or into a FIFO.
    let outside = p.path().join("elsewhere.toml");
    std::os::unix::fs::symlink(&outside, p.path().join("link.toml")).unwrap();
    let linked = p.run(&["--config", "link.toml", "init"]);
    linked.assert_clean_error(code(exit::USAGE));
    assert!(
        linked.stderr.contains("a symbolic link is already there"),
        "{}",
        linked.stderr
    );
    assert!(!outside.exists());
    nix::unistd::mkfifo(&p.path().join("pipe.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let piped = p.run(&["--config", "pipe.toml", "init"]);
    piped.assert_clean_error(code(exit::USAGE));
    assert!(piped.stderr.contains("FIFO"), "{}", piped.stderr);
}

/// The words of a shell command line up to its first operator (`||`, `&&`, `;`, `|`, `>`),
/// with double and single quotes removed.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut in_word = false;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '|' | '&' | ';' | '>' | '#') => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    if in_word {
        words.push(word);
    }
    words
}

#[test]
fn the_github_actions_workflow_is_valid_yaml_runs_real_pgdeck_commands_and_is_the_readmes() {
    use clap::Parser as _;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = std::fs::read_to_string(root.join("config/github-actions.yml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = &readme[readme.find("## Coming from Prisma").expect("the section")..];
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```\n").next())
        .expect("a yaml block in Coming from Prisma");
    assert_eq!(
        block, file,
        "the README's workflow differs from config/github-actions.yml"
    );

    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&file).unwrap();
    assert_eq!(
        yaml["on"]["push"]["branches"],
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>("[main, production]").unwrap()
    );
    let job = &yaml["jobs"]["migrate"];
    assert_eq!(job["runs-on"], "ubuntu-latest");
    let steps = job["steps"].as_sequence().expect("steps");
    let text = |v: &serde_yaml_ng::Value| v.as_str().unwrap_or_default().to_owned();
    let runs: Vec<String> = steps.iter().map(|s| text(&s["run"])).collect();
    assert!(
        runs.iter().all(|r| !r.contains("prisma migrate")),
        "{runs:?}"
    );

    // Every pgdeck command in it parses with pgdeck's own command line.
    let mut commands = Vec::new();
    for run in &runs {
        for line in run.lines() {
            let words = shell_words(line.trim());
            if words.first().map(String::as_str) == Some("pgdeck") {
                pgdeck::cli::Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{line}: {e}"));
                commands.push(words[1..].join(" "));
            }
        }
    }
    for expected in [
        "status",
        "lint --format github $files",
        "backup create",
        "backup verify",
        "deploy",
        "report -o release-report.md",
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "no `pgdeck {expected}` in {commands:?}"
        );
    }
    // The production deploy names its database; it runs only on the production branch, after
    // a backup step that does too.
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| text(&s["name"]) == name)
            .unwrap_or_else(|| panic!("no step {name}"))
    };
    let production = step("Run migrations (production)");
    assert_eq!(
        text(&production["if"]),
        "github.ref == 'refs/heads/production'"
    );
    assert!(
        text(&production["run"]).contains("--confirm"),
        "{production:?}"
    );
    assert_eq!(
        text(&step("Back up production")["if"]),
        "github.ref == 'refs/heads/production'"
    );
    let position = |name: &str| steps.iter().position(|s| text(&s["name"]) == name).unwrap();
    assert!(position("Back up production") < position("Run migrations (production)"));
    assert!(position("Lint the new migrations") < position("Run migrations (staging)"));
    // Anything failing tells the team through the webhook.
    let notify = step("Notify on failure");
    assert_eq!(text(&notify["if"]), "failure()");
    assert!(
        text(&notify["env"]["SLACK_WEBHOOK"]).contains("secrets.SLACK_WEBHOOK")
            && text(&notify["run"]).contains("\"$SLACK_WEBHOOK\""),
        "{notify:?}"
    );
    // The variables pgdeck init names are given, from the environment's secrets.
    let env = &job["env"];
    for var in ["STAGING_DATABASE_URL", "PRODUCTION_DATABASE_URL"] {
        assert!(text(&env[var]).contains(&format!("secrets.{var}")), "{var}");
    }
    assert!(text(&env["PGDECK_ENV"]).contains("'production'"));
}

/// Runs the binary in a pseudo-terminal (stdin, stdout and stderr a terminal), in `dir`, with
/// only `PATH`, `HOME` and `TERM` from here plus `vars`. It types nothing, or `answer`'s keys
/// once its prompt shows. Returns the exit code and what it wrote, or panics with the screen
/// when it does not end on its own (it asked something nobody answers).
fn run_in_terminal(
    dir: &Path,
    args: &[&str],
    vars: &[(&str, &str)],
    answer: Option<(&str, &str)>,
) -> (u32, String) {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::Read as _;
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 160,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("open a pty");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_pgdeck"));
    cmd.env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("HOME", dir);
    cmd.env("TERM", "xterm-256color");
    cmd.env("NO_COLOR", "1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.args(args);
    cmd.cwd(dir);
    let mut child = pair.slave.spawn_command(cmd).expect("spawn pgdeck");
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().expect("pty reader");
    let mut writer = pair.master.take_writer().expect("pty writer");
    let mut answer = answer;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let feed = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            feed.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pgdeck") {
            break status;
        }
        if let Some((prompt, keys)) = answer
            && seen.lock().unwrap().contains(prompt)
        {
            use std::io::Write as _;
            writer.write_all(keys.as_bytes()).unwrap();
            writer.flush().unwrap();
            answer = None;
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!(
                "pgdeck {args:?} did not end on its own in a terminal:\n{}",
                seen.lock().unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // What it wrote last may still be in the pty.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let text = seen.lock().unwrap().clone();
    (status.exit_code(), text)
}

#[tokio::test]
async fn in_a_terminal_a_forward_deploy_and_resolve_ask_nothing_and_reset_still_asks() {
    let db = fresh_db("prisma_terminal").await;
    let p = Project::prisma();
    let url = db.url();
    let vars = [("DIRECT_URL", url.as_str()), ("DATABASE_URL", url.as_str())];

    let (code_deploy, out) = run_in_terminal(p.path(), &["deploy"], &vars, None);
    assert_eq!(code_deploy, 0, "{out}");
    assert!(out.contains("applied 2 migration(s)"), "{out}");
    assert!(!out.to_lowercase().contains("[y/n]"), "{out}");
    assert_eq!(db.ledger().await.len(), 2);

    p.migration(
        "prisma/migrations",
        "20250103000000_by_hand",
        "ALTER TABLE \"User\" ADD COLUMN name text;",
    );
    db.exec("ALTER TABLE \"User\" ADD COLUMN name text").await;
    let (code_resolve, out) = run_in_terminal(
        p.path(),
        &["resolve", "--applied", "20250103000000_by_hand"],
        &vars,
        None,
    );
    assert_eq!(code_resolve, 0, "{out}");
    assert_eq!(db.ledger().await.len(), 3);

    // reset is destructive: in a terminal it asks, and a no leaves everything as it was.
    let (code_reset, out) = run_in_terminal(
        p.path(),
        &["reset"],
        &vars,
        Some(("Continue? [y/N]", "n\r")),
    );
    assert_eq!(
        i32::try_from(code_reset).unwrap(),
        code(exit::REFUSED),
        "{out}"
    );
    assert!(
        out.contains("Drop every object in schema") && out.contains("not confirmed"),
        "{out}"
    );
    assert!(db.table_exists("User").await);
    assert_eq!(db.ledger().await.len(), 3);
}
