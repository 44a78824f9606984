//! The console's screens. Each owns its state, its key bindings and their handling, and its
//! drawing; the app routes keys and messages to them.

pub mod checklist;
pub mod fleet;
pub mod journal;
pub mod logs;
pub mod migrations;
pub mod monitor;
pub mod rollback;

use super::keymap::Binding;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Checklist,
    Monitor,
    Migrations,
    Rollback,
    Journal,
    Logs,
}

impl Screen {
    pub const ALL: [Screen; 6] = [
        Screen::Checklist,
        Screen::Monitor,
        Screen::Migrations,
        Screen::Rollback,
        Screen::Journal,
        Screen::Logs,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Checklist => "Checklist",
            Screen::Monitor => "Monitor",
            Screen::Migrations => "Migrations",
            Screen::Rollback => "Rollback",
            Screen::Journal => "Journal",
            Screen::Logs => "Logs",
        }
    }

    /// The screen's own key bindings (the global ones come after them).
    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Screen::Checklist => checklist::BINDINGS,
            Screen::Monitor => monitor::BINDINGS,
            Screen::Migrations => migrations::BINDINGS,
            Screen::Rollback => rollback::BINDINGS,
            Screen::Journal => journal::BINDINGS,
            Screen::Logs => logs::BINDINGS,
        }
    }
}
