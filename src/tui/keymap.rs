//! Keys become commands through one table per screen; each binding's description feeds the footer
//! and the help overlay, so what is shown is what works.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::Screen;

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

const fn bind(
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

const MOVE: [Binding; 2] = [
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

const CHECKLIST: &[Binding] = &[
    MOVE[0],
    MOVE[1],
    bind(
        &[KeyCode::Enter],
        "Enter",
        "run the step / tick it",
        Command::Activate,
        true,
    ),
    bind(
        &[KeyCode::Char('s')],
        "s",
        "skip an optional step (with a note)",
        Command::Skip,
        true,
    ),
    bind(
        &[KeyCode::Char('a')],
        "a",
        "acknowledge DANGEROUS findings (with a reason)",
        Command::Acknowledge,
        true,
    ),
    bind(
        &[KeyCode::Char('x')],
        "x",
        "cancel the running step",
        Command::CancelStep,
        true,
    ),
];

const MONITOR: &[Binding] = &[
    MOVE[0],
    MOVE[1],
    bind(
        &[KeyCode::Char('c')],
        "c",
        "cancel the selected query",
        Command::Cancel,
        true,
    ),
    bind(
        &[KeyCode::Char('K')],
        "K",
        "terminate the selected backend",
        Command::Terminate,
        true,
    ),
    bind(
        &[KeyCode::Char('p')],
        "p",
        "pause / resume",
        Command::Pause,
        true,
    ),
    bind(
        &[KeyCode::Char('+')],
        "+/-",
        "refresh faster / slower",
        Command::Faster,
        true,
    ),
    bind(
        &[KeyCode::Char('-')],
        "",
        "refresh slower",
        Command::Slower,
        false,
    ),
    bind(
        &[KeyCode::Char('r')],
        "r",
        "to the Rollback screen",
        Command::ToRollback,
        true,
    ),
];

const MIGRATIONS: &[Binding] = &[
    MOVE[0],
    MOVE[1],
    bind(
        &[KeyCode::Char('d')],
        "d",
        "show migration.sql / down.sql",
        Command::ToggleDown,
        true,
    ),
];

const ROLLBACK: &[Binding] = &[
    MOVE[0],
    MOVE[1],
    bind(
        &[KeyCode::Left, KeyCode::Char('h')],
        "h/l",
        "migrations / emergency checklist",
        Command::Left,
        false,
    ),
    bind(
        &[KeyCode::Right, KeyCode::Char('l')],
        "",
        "emergency checklist",
        Command::Right,
        false,
    ),
    bind(
        &[KeyCode::Char(' ')],
        "Space",
        "mark a migration / tick an item",
        Command::Mark,
        true,
    ),
    bind(
        &[KeyCode::Char('f')],
        "f",
        "forward rollback of the marked (or newest) migrations",
        Command::ForwardRollback,
        true,
    ),
    bind(
        &[KeyCode::Char('b')],
        "b",
        "restore the newest verified backup",
        Command::Restore,
        true,
    ),
    bind(
        &[KeyCode::Char('c')],
        "c",
        "code rollback hook",
        Command::CodeRollback,
        true,
    ),
    bind(
        &[KeyCode::Char('u')],
        "u",
        "resolve a failed migration as rolled back",
        Command::Resolve,
        true,
    ),
];

const JOURNAL: &[Binding] = &[bind(
    &[KeyCode::Char('w')],
    "w",
    "write the release report",
    Command::WriteReport,
    true,
)];

/// The screen's own bindings (global ones come after them).
pub fn screen_bindings(screen: Screen) -> &'static [Binding] {
    match screen {
        Screen::Checklist => CHECKLIST,
        Screen::Monitor => MONITOR,
        Screen::Migrations => MIGRATIONS,
        Screen::Rollback => ROLLBACK,
        Screen::Journal => JOURNAL,
    }
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
    screen_bindings(screen)
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
            for b in screen_bindings(screen).iter().chain(GLOBAL) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{k:?} twice on {screen:?}");
                    seen.push(*k);
                }
            }
        }
    }
}
