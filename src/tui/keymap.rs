//! Keys become commands through one table per screen; each binding's description feeds the footer
//! and the help overlay, so what is shown is what works.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::screens::Screen;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Quit,
    Help,
    Screen(usize),
    NextScreen,
    PrevScreen,
    /// Move the selection (or scroll the text) of the list in focus.
    Move(Motion),
    /// Type a filter for the list in focus.
    Filter,
    /// Close what is open over the screen (a detail view, the plan, a filter).
    Back,
    Activate,
    Skip,
    Acknowledge,
    CancelStep,
    Cancel,
    Terminate,
    Pause,
    Faster,
    Slower,
    ToRollback,
    ToggleDown,
    WriteReport,
    Left,
    Right,
    Mark,
    ForwardRollback,
    Restore,
    /// PITR: restore the stanza to the newest restore point into a side cluster.
    SideRestore,
    /// PITR: print the in-place recovery procedure to the newest restore point.
    InPlaceProcedure,
    CodeRollback,
    Resolve,
    /// Cancel the running Rollback action.
    CancelAction,
    /// The Monitor's sort order.
    Sort,
    /// Show or hide idle-in-transaction sessions.
    ToggleIdle,
    /// Sample health in the background, or stop.
    ToggleLiveHealth,
    /// Every environment side by side, or this one's migrations again.
    ToggleEnvironments,
}

/// How a selection moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
}

/// Rows a page moves.
pub const PAGE: usize = 10;

impl Motion {
    /// The selection after the motion, in a list of `len`.
    pub fn apply(self, selected: usize, len: usize) -> usize {
        let last = len.saturating_sub(1);
        match self {
            Motion::Up => selected.saturating_sub(1),
            Motion::Down => (selected + 1).min(last),
            Motion::PageUp => selected.saturating_sub(PAGE),
            Motion::PageDown => (selected + PAGE).min(last),
            Motion::Top => 0,
            Motion::Bottom => last,
        }
        .min(last)
    }
}

#[derive(Clone, Copy)]
pub struct Binding {
    pub keys: &'static [KeyCode],
    /// Shown in the footer and the help overlay.
    pub label: &'static str,
    pub description: &'static str,
    pub command: Command,
    /// The word the footer shows it with ("": only in help). Footers show as many as fit,
    /// in order.
    pub footer: &'static str,
}

pub const fn bind(
    keys: &'static [KeyCode],
    label: &'static str,
    description: &'static str,
    command: Command,
    footer: &'static str,
) -> Binding {
    Binding {
        keys,
        label,
        description,
        command,
        footer,
    }
}

const GLOBAL: &[Binding] = &[
    bind(&[KeyCode::Char('?')], "?", "help", Command::Help, "help"),
    bind(
        &[KeyCode::Char('q')],
        "q",
        "quit (asks while work runs)",
        Command::Quit,
        "quit",
    ),
    bind(
        &[KeyCode::Tab],
        "Tab",
        "next screen",
        Command::NextScreen,
        "",
    ),
    bind(
        &[KeyCode::BackTab],
        "S-Tab",
        "previous screen",
        Command::PrevScreen,
        "",
    ),
    bind(
        &[KeyCode::Char('1')],
        "1",
        "Checklist",
        Command::Screen(0),
        "",
    ),
    bind(
        &[KeyCode::Char('2')],
        "2",
        "Monitor",
        Command::Screen(1),
        "",
    ),
    bind(
        &[KeyCode::Char('3')],
        "3",
        "Migrations",
        Command::Screen(2),
        "",
    ),
    bind(
        &[KeyCode::Char('4')],
        "4",
        "Rollback",
        Command::Screen(3),
        "",
    ),
    bind(
        &[KeyCode::Char('5')],
        "5",
        "Journal",
        Command::Screen(4),
        "",
    ),
    bind(&[KeyCode::Char('6')], "6", "Logs", Command::Screen(5), ""),
];

/// Moving in the list or text in focus, and filtering it: the same on every screen.
const NAV: &[Binding] = &[
    bind(
        &[KeyCode::Down, KeyCode::Char('j')],
        "j/k",
        "move down",
        Command::Move(Motion::Down),
        "move",
    ),
    bind(
        &[KeyCode::Up, KeyCode::Char('k')],
        "k / Up",
        "move up",
        Command::Move(Motion::Up),
        "",
    ),
    bind(
        &[KeyCode::PageDown],
        "PgDn",
        "a page down",
        Command::Move(Motion::PageDown),
        "",
    ),
    bind(
        &[KeyCode::PageUp],
        "PgUp",
        "a page up",
        Command::Move(Motion::PageUp),
        "",
    ),
    bind(
        &[KeyCode::Char('g'), KeyCode::Home],
        "g / Home",
        "to the top",
        Command::Move(Motion::Top),
        "",
    ),
    bind(
        &[KeyCode::Char('G'), KeyCode::End],
        "G / End",
        "to the bottom",
        Command::Move(Motion::Bottom),
        "",
    ),
    bind(
        &[KeyCode::Char('/')],
        "/",
        "filter the list (Enter keeps it, Esc clears it)",
        Command::Filter,
        "",
    ),
    bind(
        &[KeyCode::Esc],
        "Esc",
        "back: close the detail, the plan or the filter",
        Command::Back,
        "",
    ),
];

pub fn nav_bindings() -> &'static [Binding] {
    NAV
}

pub fn global_bindings() -> &'static [Binding] {
    GLOBAL
}

pub fn lookup(screen: Screen, key: &KeyEvent) -> Option<Command> {
    if key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return None;
    }
    screen
        .bindings()
        .iter()
        .chain(NAV)
        .chain(GLOBAL)
        .find(|b| b.keys.contains(&key.code))
        .map(|b| b.command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_on_a_screen() {
        for screen in Screen::ALL {
            let mut seen = Vec::new();
            for b in screen.bindings().iter().chain(NAV).chain(GLOBAL) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{k:?} twice on {screen:?}");
                    seen.push(*k);
                }
            }
        }
    }
}
