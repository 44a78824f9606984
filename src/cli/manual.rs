//! `pgdeck completions SHELL` and `pgdeck man [COMMAND]`: shell completions (clap_complete) and
//! the man page (clap_mangen), both generated from the same clap definition the parser uses, so
//! they never drift from it. They go to stdout.

use std::io::Write as _;

use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, roman};

use super::{Cli, exit};
use crate::error::{Error, Result};

/// Writes the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "pgdeck", &mut out);
    write_out(&out)
}

/// Writes the man page: pgdeck(1), or `pgdeck-COMMAND(1)` for one command.
pub fn man(command: Option<&str>) -> Result<u8> {
    write_out(&render(command)?)
}

/// The roff of the page.
pub fn render(command: Option<&str>) -> Result<Vec<u8>> {
    let root = Cli::command().disable_help_subcommand(true);
    let mut out = Vec::new();
    let io = |e: std::io::Error| {
        Error::runtime(
            format!("cannot render the man page: {e}"),
            "report it: the command line definition did not render",
        )
    };
    let Some(name) = command else {
        clap_mangen::Man::new(root).render(&mut out).map_err(io)?;
        // Exit status, environment and files go before the version, as man pages have them.
        let extra = extra_sections().to_roff();
        let text = String::from_utf8_lossy(&out).into_owned();
        let page = match text.find(".SH VERSION") {
            Some(at) => format!("{}{extra}{}", &text[..at], &text[at..]),
            None => format!("{text}{extra}"),
        };
        return Ok(page.into_bytes());
    };
    let mut root = root;
    root.build();
    let Some(sub) = root.find_subcommand(name).cloned() else {
        let names: Vec<String> = root
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect();
        return Err(Error::input(
            format!("'{name}' is not a pgdeck command"),
            format!("name one of: {}", names.join(", ")),
        ));
    };
    let page = format!("pgdeck-{}", sub.get_name());
    let bin = format!("pgdeck {}", sub.get_name());
    let sub = sub.display_name(page.clone()).bin_name(bin);
    clap_mangen::Man::new(sub)
        .title(page)
        .render(&mut out)
        .map_err(io)?;
    Ok(out)
}

/// The sections a man page of pgdeck has beyond its options: exit status, environment, files.
fn extra_sections() -> Roff {
    let mut r = Roff::default();
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exit::MEANINGS {
        r.control("TP", []);
        r.text([bold(code.to_string())]);
        r.text([roman(*meaning)]);
    }
    r.control("SH", ["ENVIRONMENT"]);
    for (name, what) in [
        (
            "DATABASE_URL",
            "The database URL (Prisma's format, ?schema= included) when neither --database-url nor the environment's database_url / database_url_env names one, and the Prisma schema names no other variable.",
        ),
        (
            "DIRECT_URL",
            "Or whichever variable the schema's directUrl = env(\"...\") names: the direct connection (not through a pooler) that every pgdeck session uses; deploy, resolve, reset, restores and rollbacks refuse while it is unset.",
        ),
        (
            "PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT",
            "Fill in what the URL leaves out; a missing password is looked up in ~/.pgpass (or $PGPASSFILE).",
        ),
        (
            "PGDECK_CONFIG",
            "The config file, when --config does not name one.",
        ),
        (
            "PGDECK_ENV",
            "The environment, when --env does not name one.",
        ),
        (
            "PGDECK_JOURNAL_DIR",
            "Where the release journal is kept (default ~/.local/share/pgdeck/journal).",
        ),
        ("NO_COLOR", "The console draws without colour."),
    ] {
        r.control("TP", []);
        r.text([bold(name)]);
        r.text([roman(what)]);
    }
    r.control("SH", ["FILES"]);
    for (name, what) in [
        (
            "pgdeck.toml, config/pgdeck.toml, ~/.config/pgdeck/pgdeck.toml",
            "The config file, the first found of these (pgdeck init writes the first).",
        ),
        (
            ".env, prisma/.env",
            "Read, as Prisma reads them, for a URL variable the environment lacks; the environment wins, and two files that disagree are an error.",
        ),
        (
            "package.json, prisma.config.ts, prisma/schema.prisma",
            "Where the migrations folder and the schema's datasource are found when pgdeck.toml and --migrations say nothing.",
        ),
        (
            "<migrations>/<timestamp>_<name>/migration.sql, down.sql",
            "Prisma's migrations folder; down.sql is what pgdeck revert turns into a forward rollback.",
        ),
    ] {
        r.control("TP", []);
        r.text([bold(name)]);
        r.text([roman(what)]);
    }
    r
}

fn write_out(bytes: &[u8]) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(exit::OK),
        // A reader that stopped early (`| head`) is not a failure of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(Error::runtime(
            format!("cannot write to stdout: {e}"),
            "check where the output goes",
        )),
    }
}
