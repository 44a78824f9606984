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
    Up,
    Down,
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
    CodeRollback,
    Resolve,
    /// Cancel the running Rollback action.
    CancelAction,
}

#[derive(Clone, Copy)]
pub struct Binding {
    pub keys: &'static [KeyCode],
    /// Shown in the footer and the help overlay.
    pub label: &'static str,
    pub description: &'static str,
    pub command: Command,
    /// Shown in the footer (the rest only in help).
    pub footer: bool,
}

pub const fn bind(
    keys: &'static [KeyCode],
    label: &'static str,
    description: &'static str,
    command: Command,
    footer: bool,
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
    bind(&[KeyCode::Char('?')], "?", "help", Command::Help, true),
    bind(
        &[KeyCode::Char('q')],
        "q",
        "quit (asks while a step runs)",
        Command::Quit,
        true,
    ),
    bind(
        &[KeyCode::Tab],
        "Tab",
        "next screen",
        Command::NextScreen,
        false,
    ),
    bind(
        &[KeyCode::BackTab],
        "S-Tab",
        "previous screen",
        Command::PrevScreen,
        false,
    ),
    bind(
        &[KeyCode::Char('1')],
        "1",
        "Checklist",
        Command::Screen(0),
        false,
    ),
    bind(
        &[KeyCode::Char('2')],
        "2",
        "Monitor",
        Command::Screen(1),
        false,
    ),
    bind(
        &[KeyCode::Char('3')],
        "3",
        "Migrations",
        Command::Screen(2),
        false,
    ),
    bind(
        &[KeyCode::Char('4')],
        "4",
        "Rollback",
        Command::Screen(3),
        false,
    ),
    bind(
        &[KeyCode::Char('5')],
        "5",
        "Journal",
        Command::Screen(4),
        false,
    ),
];

/// Moving the selection, on every screen with a list.
pub const MOVE: [Binding; 2] = [
    bind(
        &[KeyCode::Down, KeyCode::Char('j')],
        "j/k",
        "move",
        Command::Down,
        true,
    ),
    bind(
        &[KeyCode::Up, KeyCode::Char('k')],
        "",
        "move up",
        Command::Up,
        false,
    ),
];

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
            for b in screen.bindings().iter().chain(GLOBAL) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{k:?} twice on {screen:?}");
                    seen.push(*k);
                }
            }
        }
    }
}
