//! The console: one event loop over one channel. Input, ticks, the monitor, refreshes and jobs
//! only send messages; `App::update` folds them into state; the screen is drawn when something
//! changed. The console renders release workflows, it does not own them: its jobs run the
//! release room's functions, and it runs no SQL and starts no process itself. The terminal is
//! restored on every exit path, and on panic by ratatui's hook.

pub mod app;
pub mod deploying;
pub mod fleet;
pub mod jobs;
pub mod keymap;
pub mod modal;
pub mod screens;
pub mod theme;
pub mod view;
pub mod widgets;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ratatui::crossterm::event::{
    self, Event as TermEvent, KeyEventKind, MouseButton, MouseEventKind,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checklist::{self, Checklist, Facts};
use crate::error::{Error, Result};
use crate::journal::{self, Event, Journal, SharedJournal};
use crate::release::{Candidate, Environment};
pub use app::{App, Effect, Msg};
pub use screens::Screen;
pub use view::Theme;

/// How long quitting waits for running jobs to stop (their statements cancelled on the server).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How the console starts.
pub struct Options {
    pub journal_dir: std::path::PathBuf,
    /// Resume an unfinished session without asking (`Some(true)`), start afresh (`Some(false)`),
    /// or ask (`None`).
    pub resume: Option<bool>,
    /// Closes the console as `q` would (SIGTERM to pgdeck).
    pub stop: CancellationToken,
    /// Every configured environment, for the Migrations screen's matrix (the console's own
    /// among them is taken as the console has it); empty: only the console's own.
    pub environments: Vec<Candidate>,
}

/// Opens the console on `env` and runs it until the operator quits.
pub async fn run(env: Environment, opts: Options) -> Result<()> {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Error::input(
            "the console needs a terminal",
            "run it in a terminal, or use the headless commands (`pgdeck --help`)",
        ));
    }
    let operator = journal::operator();
    let facts = Facts {
        protected: env.protected,
        ..Facts::default()
    };
    let hooks: Vec<&str> = env.hooks.commands.keys().map(String::as_str).collect();
    let items = checklist::items(&env.checklist, &hooks).map_err(|e| {
        Error::input(
            format!("checklist: {e}"),
            "fix the environment's [checklist]",
        )
    })?;
    let checklist = Checklist::new(items, facts);
    let (mut app, recorder, session_file): (App, Arc<dyn journal::Recorder>, _) =
        match open_journal(&env, &opts, &operator)? {
            Opened::Own(journal, resumed) => {
                let journal = SharedJournal::new(journal);
                let session_file = journal.path();
                let mut app = App::new(env.clone(), checklist, Some(journal.clone()));
                if let Some(entries) = &resumed {
                    app.restore_from(entries);
                }
                (app, Arc::new(journal), session_file)
            }
            Opened::Held {
                path,
                entries,
                holder,
            } => {
                // Another console drives this session: this one watches, and runs nothing.
                let mut app = App::new(env.clone(), checklist, None);
                app.journal = entries.clone();
                app.journal_path = Some(path.clone());
                app.restore_from(&entries);
                app.read_only = Some(holder.to_string());
                app.flash = Some(format!(
                    "read-only: {holder} has this session open; nothing runs from here"
                ));
                (app, Arc::new(HeldElsewhere(holder)), path)
            }
        };

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (interval, _) = tokio::sync::watch::channel(app.monitor.interval);
    let environments = matrix_candidates(&env, opts.environments.clone());
    let runner = jobs::Runner {
        env,
        environments,
        journal: recorder,
        tx: tx.clone(),
        session_file,
        watch_session: app.read_only.is_some(),
        interval,
        root: CancellationToken::new(),
    };
    jobs::monitor(&runner);
    let _watcher = jobs::watch_folder(&runner);
    jobs::follow_logs(&runner);
    let mut jobs = jobs::Jobs::new(runner);
    jobs.apply(Effect::Refresh);
    spawn_input(tx.clone());
    let ticker = tx.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            if ticker.send(Msg::Tick).is_err() {
                return;
            }
        }
    });
    let stopper = tx.clone();
    let stop = opts.stop.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        let _ = stopper.send(Msg::Stop);
    });

    let _ = color_eyre::install();
    let mut terminal = ratatui::init();
    mouse(true);
    let restore_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        mouse(false);
        restore_hook(info);
    }));
    let theme = Theme::from_env();
    let mut outcome = terminal
        .draw(|f| view::draw(&app, theme, f))
        .map(|_| ())
        .map_err(draw_error);
    let fold = |app: &mut App, jobs: &mut jobs::Jobs, msg: Msg| {
        let refreshed = matches!(msg, Msg::Refreshed(_));
        if let Msg::Done { origin, .. } = &msg {
            jobs.ended(*origin);
        }
        for effect in app.update(msg) {
            jobs.apply(effect);
        }
        if refreshed {
            jobs.refreshed();
        }
    };
    while outcome.is_ok() && !app.should_quit {
        let Some(msg) = rx.recv().await else { break };
        fold(&mut app, &mut jobs, msg);
        // Coalesce whatever else is already queued before drawing.
        while !app.should_quit
            && let Ok(msg) = rx.try_recv()
        {
            fold(&mut app, &mut jobs, msg);
        }
        if app.should_quit {
            break;
        }
        if app.dirty {
            app.dirty = false;
            outcome = terminal
                .draw(|f| view::draw(&app, theme, f))
                .map(|_| ())
                .map_err(draw_error);
        }
    }
    // Running jobs stop the way their rooms stop them: a statement on the server is cancelled
    // and rolled back before the console goes.
    if app.checklist.running().is_some() || app.rollback.running.is_some() {
        let _ = terminal.draw(|f| {
            view::draw(&app, theme, f);
            widgets::draw_notice(f, "stopping: cancelling what runs on the server…");
        });
    }
    jobs.shutdown(SHUTDOWN_GRACE).await;
    // What they sent while stopping (their ends, what they journaled) is still folded in.
    while let Ok(msg) = rx.try_recv() {
        if matches!(
            msg,
            Msg::Done { .. } | Msg::Journaled(_) | Msg::Started { .. }
        ) {
            app.update(msg);
        }
    }
    mouse(false);
    ratatui::restore();
    let (done, total) = app.checklist.progress();
    if done == total {
        app.record(Event::SessionFinished);
    }
    if outcome.is_ok() && opts.stop.is_cancelled() {
        return Err(Error::cancelled(
            "the console was closed by a signal; running work was cancelled on the server first",
            "open it again: the session resumes where it was",
        ));
    }
    outcome
}

/// The environments the matrix reads: the configured ones, the console's own as the console
/// has it (its command line may have pointed it elsewhere), first when the file lacks it.
fn matrix_candidates(env: &Environment, configured: Vec<Candidate>) -> Vec<Candidate> {
    let own = || Candidate::Ready(Box::new(env.clone()));
    let mut out: Vec<Candidate> = configured
        .into_iter()
        .map(|c| if c.name() == env.name { own() } else { c })
        .collect();
    if !out.iter().any(|c| c.name() == env.name) {
        out.insert(0, own());
    }
    out
}

fn draw_error(e: std::io::Error) -> Error {
    Error::runtime(
        format!("cannot draw on the terminal: {e}"),
        "check the terminal, or use the headless commands",
    )
}

/// The wheel and clicks reach the console (`false`: the terminal gets them back).
fn mouse(on: bool) {
    use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture};
    let mut out = std::io::stdout();
    let _ = if on {
        ratatui::crossterm::execute!(out, EnableMouseCapture)
    } else {
        ratatui::crossterm::execute!(out, DisableMouseCapture)
    };
}

/// Keys, the mouse and resizes, read on a thread of their own (crossterm's read blocks).
fn spawn_input(tx: mpsc::UnboundedSender<Msg>) {
    std::thread::spawn(move || {
        loop {
            let msg = match event::read() {
                Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Msg::Key(k),
                Ok(TermEvent::Resize(..)) => Msg::Resize,
                Ok(TermEvent::Mouse(m)) => match m.kind {
                    MouseEventKind::ScrollUp
                    | MouseEventKind::ScrollDown
                    | MouseEventKind::Down(MouseButton::Left) => Msg::Mouse(m),
                    _ => continue,
                },
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    });
}

/// The session the console opens.
enum Opened {
    /// Its own: new, or the unfinished one resumed (with what it held).
    Own(Journal, Option<Vec<journal::Entry>>),
    /// The unfinished session another console holds: read, never written.
    Held {
        path: std::path::PathBuf,
        entries: Vec<journal::Entry>,
        holder: journal::Holder,
    },
}

/// Refuses every append: the session belongs to another console.
struct HeldElsewhere(journal::Holder);

impl journal::Recorder for HeldElsewhere {
    fn record(&self, _event: Event) -> Result<journal::Entry> {
        Err(Error::new(
            crate::error::ErrorKind::SessionHeld,
            format!(
                "{} has this session open: this console only reads it",
                self.0
            ),
            "act from that console, or close it and open this one again",
        ))
    }
}

/// A new session, or the unfinished one resumed (asked on the terminal before the screen
/// opens), or, when another console holds it, that one to watch.
fn open_journal(env: &Environment, opts: &Options, operator: &str) -> Result<Opened> {
    if let Some(path) = journal::unfinished(&opts.journal_dir, &env.name)? {
        if let Some(holder) = journal::held_by(&path) {
            let entries = journal::read(&path)?;
            return Ok(Opened::Held {
                path,
                entries,
                holder,
            });
        }
        let resume = match opts.resume {
            Some(r) => r,
            None => ask_resume(&path)?,
        };
        if resume {
            let (j, entries) = Journal::resume(&path, operator)?;
            return Ok(Opened::Own(j, Some(entries)));
        }
    }
    let j = Journal::start(
        &opts.journal_dir,
        &env.name,
        &env.target.to_string(),
        operator,
    )?;
    Ok(Opened::Own(j, None))
}

fn ask_resume(path: &Path) -> Result<bool> {
    use std::io::{BufRead as _, Write as _};
    let entries = journal::read(path)?;
    let started = entries
        .first()
        .map(|e| format!("{} by {}", e.at.format("%Y-%m-%d %H:%M UTC"), e.operator))
        .unwrap_or_default();
    let steps = entries
        .iter()
        .filter(|e| {
            matches!(
                e.event,
                Event::StepFinished { .. } | Event::StepTicked { .. }
            )
        })
        .count();
    print!(
        "An unfinished release session ({started}, {steps} step(s) recorded) is in {}.\nResume it? [Y/n] ",
        path.display()
    );
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::runtime(format!("reading the answer: {e}"), "answer y or n"))?;
    Ok(!line.trim().eq_ignore_ascii_case("n"))
}
