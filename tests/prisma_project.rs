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
