//! Modals: a confirmation the core asked for (a yes, or the database name typed), a reason or a
//! note, or the choices a refusal offers (an override with a reason, terminating the sessions in
//! the way, acknowledging findings). A modal only collects the answer; what the answer is worth
//! is decided by the workflow it is sent back to.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::jobs::{Job, Origin, Override};
use super::theme::Theme;
use super::widgets::centered;
use crate::error::Ask;

/// What happens once the operator answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Then {
    /// Runs the job again with the confirmation the core asked for.
    Confirm {
        origin: Origin,
        job: Box<Job>,
        ask: Ask,
    },
    /// Runs the job again with an override and the reason typed.
    Override {
        origin: Origin,
        job: Box<Job>,
        which: Override,
    },
    /// Runs the job again with these findings acknowledged for the reason typed.
    Acknowledge {
        origin: Origin,
        job: Box<Job>,
        findings: Vec<String>,
    },
    /// Runs the restore again, terminating the sessions in its way.
    Terminate {
        origin: Origin,
        job: Box<Job>,
    },
    /// Runs the job the operator chose.
    Run {
        origin: Origin,
        job: Box<Job>,
    },
    /// Acknowledges the pending DANGEROUS findings for the next deploy (the checklist's `a`).
    AcknowledgeFindings {
        findings: Vec<String>,
    },
    /// Cancels the job running there.
    Cancel(Origin),
    /// Ticks a manual checklist item, with the note typed.
    Tick {
        index: usize,
    },
    /// Skips an optional item, with the note typed.
    Skip {
        index: usize,
    },
    /// Ticks an item of the emergency checklist.
    EmergencyTick {
        index: usize,
    },
    Quit,
    /// Nothing: the modal offers choices, each with its own answer.
    Close,
}

/// What the operator types or presses.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `y` to go ahead.
    Yes,
    /// This exact text (the database name), then Enter.
    Name(String),
    /// A reason, required.
    Reason,
    /// A note, optional.
    Note,
    /// One of these keys.
    Choice(Vec<Choice>),
}

/// One answer to a refusal.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub key: char,
    pub label: String,
    pub then: Then,
    /// What the next modal asks (a reason, a yes).
    pub input: Input,
    pub title: String,
    pub lines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Modal {
    pub title: String,
    /// What will happen to what.
    pub lines: Vec<String>,
    pub input: Input,
    pub then: Then,
    pub text: String,
    pub error: Option<String>,
}

impl Modal {
    pub fn new(title: impl Into<String>, lines: Vec<String>, input: Input, then: Then) -> Modal {
        Modal {
            title: title.into(),
            lines,
            input,
            then,
            text: String::new(),
            error: None,
        }
    }

    /// The confirmation a workflow asked for, to run it again with the answer.
    pub fn confirmation(origin: Origin, job: Job, ask: Ask) -> Modal {
        let mut lines = ask.lines.clone();
        let input = match &ask.expect {
            Some(name) => {
                lines.push(format!(
                    "Protected environment: type the database name ({name}) and press Enter."
                ));
                Input::Name(name.clone())
            }
            None => Input::Yes,
        };
        Modal::new(
            ask.title.clone(),
            lines,
            input,
            Then::Confirm {
                origin,
                job: Box::new(job),
                ask,
            },
        )
    }

    /// Whether the operator types into it.
    pub fn takes_text(&self) -> bool {
        matches!(self.input, Input::Name(_) | Input::Reason | Input::Note)
    }

    pub fn draw(&self, theme: Theme, f: &mut Frame, area: Rect) {
        let width = 76.min(area.width);
        let mut lines: Vec<Line> = self.lines.iter().map(|l| Line::raw(l.clone())).collect();
        if let Input::Choice(choices) = &self.input {
            lines.push(Line::raw(""));
            for c in choices {
                lines.push(Line::from(vec![
                    Span::styled(format!(" {} ", c.key), theme.selected()),
                    Span::raw(format!(" {}", c.label)),
                ]));
            }
        }
        // What the operator types, and what is wrong with it, have rows of their own at the
        // bottom: however the text above wraps, they stay in sight.
        let mut bottom: Vec<Line> = Vec::new();
        if self.takes_text() {
            // The end of what is typed stays in sight, however long it gets.
            let room = (width as usize).saturating_sub(6).max(1);
            let typed = self.text.chars().count();
            let shown: String = if typed > room {
                let tail: String = self.text.chars().skip(typed - room + 1).collect();
                format!("…{tail}")
            } else {
                self.text.clone()
            };
            bottom.push(Line::from(vec![
                Span::styled("> ", theme.dim()),
                Span::raw(shown),
                Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            ]));
        }
        if let Some(e) = &self.error {
            bottom.push(Line::styled(e.clone(), theme.bad()));
        }
        let text = Paragraph::new(lines).wrap(Wrap { trim: false });
        let inner_width = width.saturating_sub(2).max(1);
        let bottom_rows = bottom.len() as u16 + u16::from(!bottom.is_empty());
        let text_rows = text.line_count(inner_width) as u16;
        let height = (text_rows + bottom_rows + 2).min(area.height);
        let rect = centered(area, width, height);
        f.render_widget(Clear, rect);
        let keys = match &self.input {
            Input::Yes => " y confirm · Esc cancel ",
            Input::Choice(_) => " a key above · Esc close ",
            _ => " Enter confirm · Esc cancel ",
        };
        let block = Block::bordered()
            .title(format!(" {} ", self.title))
            .title_bottom(keys)
            .border_style(theme.warn());
        let inner = block.inner(rect);
        f.render_widget(block, rect);
        let [text_area, bottom_area] =
            Layout::vertical([Constraint::Min(0), Constraint::Length(bottom_rows)]).areas(inner);
        f.render_widget(text, text_area);
        if !bottom.is_empty() {
            let mut rows = vec![Line::raw("")];
            rows.extend(bottom);
            f.render_widget(Paragraph::new(rows), bottom_area);
        }
    }
}
