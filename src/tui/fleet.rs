//! The fleet console: while a fleet deploy runs, its matrix full-screen with the live state of
//! every database (`pgdeck deploy --fleet NAME --console`). The deploy is the release room's,
//! handed in by the front end; this only folds its events into the board and draws it. The
//! screen opens with the first event (a refusal before the work starts never opens it), `q`
//! cancels what runs (rolled back on the server) and, once finished, closes.

use std::future::Future;
use std::io::IsTerminal as _;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_util::sync::CancellationToken;

use super::screens::fleet::FleetBoard;
use super::theme::Theme;
use crate::error::{Error, Result};
use crate::release::{FleetEvent, FleetReport};

enum Input {
    Quit,
    Scroll(isize),
    Redraw,
}

/// Runs `work` (the fleet deploy, its events sent on the sender it is given) with the fleet's
/// matrix on the terminal; returns what it returned once the operator closes the screen.
pub async fn watch<F, Fut>(fleet: &str, cancel: &CancellationToken, work: F) -> Result<FleetReport>
where
    F: FnOnce(UnboundedSender<FleetEvent>) -> Fut,
    Fut: Future<Output = Result<FleetReport>>,
{
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Error::input(
            "the fleet console needs a terminal",
            "run it in a terminal, or drop --console to print the fleet's progress",
        ));
    }
    let (tx, mut rx) = unbounded_channel();
    let work = work(tx);
    tokio::pin!(work);
    let mut board = FleetBoard::new(fleet);
    let theme = Theme::from_env();
    let mut terminal: Option<ratatui::DefaultTerminal> = None;
    let (keys_tx, mut keys) = unbounded_channel();
    let mut result: Option<Result<FleetReport>> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            r = &mut work, if result.is_none() => {
                while let Ok(e) = rx.try_recv() {
                    board.fold(&e);
                }
                board.finished = true;
                // Refused before it started: nothing was shown, nothing to read.
                if terminal.is_none() || r.is_err() {
                    result = Some(r);
                    break;
                }
                result = Some(r);
            }
            Some(e) = rx.recv() => {
                board.fold(&e);
                if terminal.is_none() {
                    terminal = Some(ratatui::init());
                    spawn_input(keys_tx.clone());
                }
            }
            Some(input) = keys.recv() => match input {
                Input::Quit if result.is_some() => break,
                Input::Quit => cancel.cancel(),
                Input::Scroll(by) => board.scroll_by(by),
                Input::Redraw => {}
            },
            _ = tick.tick() => {}
        }
        if let Some(t) = terminal.as_mut() {
            let elapsed = board
                .started
                .map(|s| crate::units::human_duration(s.elapsed()));
            t.draw(|f| board.draw(theme, f, f.area(), elapsed.as_deref()))
                .map_err(|e| {
                    Error::runtime(
                        format!("cannot draw on the terminal: {e}"),
                        "drop --console to print the fleet's progress",
                    )
                })?;
        }
    }
    if terminal.is_some() {
        ratatui::restore();
    }
    result.unwrap_or_else(|| {
        Err(Error::cancelled(
            "the fleet console closed before the deploy ended",
            "check what it left with `pgdeck status --fleet NAME`",
        ))
    })
}

/// Keys, read on a thread of their own (crossterm's read blocks); it ends when the console
/// stops listening.
fn spawn_input(tx: UnboundedSender<Input>) {
    std::thread::spawn(move || {
        loop {
            let input = match event::read() {
                Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => Input::Quit,
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        Input::Quit
                    }
                    KeyCode::Char('j') | KeyCode::Down => Input::Scroll(1),
                    KeyCode::Char('k') | KeyCode::Up => Input::Scroll(-1),
                    KeyCode::PageDown => Input::Scroll(10),
                    KeyCode::PageUp => Input::Scroll(-10),
                    _ => continue,
                },
                Ok(TermEvent::Resize(..)) => Input::Redraw,
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.send(input).is_err() {
                return;
            }
        }
    });
}
