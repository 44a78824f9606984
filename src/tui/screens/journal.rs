//! The Journal screen: what this session did, every step, tick, confirmation and override;
//! `w` writes the release report.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::checklist::Operation;
use crate::journal::Event;
use crate::tui::app::{App, Effect};
use crate::tui::jobs::{Job, Origin};
use crate::tui::keymap::{Binding, Command, bind};
use crate::tui::theme::Theme;

pub const BINDINGS: &[Binding] = &[bind(
    &[KeyCode::Char('w')],
    "w",
    "write the release report",
    Command::WriteReport,
    true,
)];

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    if command == Command::WriteReport
        && let Some(i) = app.checklist.index_of("report")
    {
        if app.checklist.state(i).is_complete() || app.checklist.order_gate(i).is_some() {
            // The report can be written at any time; the step stays as it is.
            return vec![Effect::Run {
                origin: Origin::Journal,
                job: Job::of(Operation::WriteReport),
            }];
        }
        return app.run(Origin::Step(i), Job::WriteReport);
    }
    Vec::new()
}

pub fn draw(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let mut lines = Vec::new();
    let visible = area.height.saturating_sub(2) as usize;
    // Entries wrap (what a cancel did not apply is at the end of its line): show the newest
    // that fit.
    let skip = app.journal.len().saturating_sub(visible);
    for e in app.journal.iter().skip(skip) {
        let (text, style) = match &e.event {
            Event::SessionStarted {
                environment,
                database,
                ..
            } => (
                format!("session started on {environment} ({database})"),
                Style::new(),
            ),
            Event::SessionResumed => ("session resumed".into(), Style::new()),
            Event::StepStarted { title, .. } => (format!("{title}: started"), theme.dim()),
            Event::StepFinished {
                title,
                outcome,
                summary,
                duration_ms,
                ..
            } => (
                format!(
                    "{title}: {outcome:?} in {:.1}s: {summary}",
                    *duration_ms as f64 / 1000.0
                ),
                if *outcome == crate::journal::Outcome::Ok {
                    theme.good()
                } else {
                    theme.bad()
                },
            ),
            Event::StepTicked { title, note, .. } => (
                format!(
                    "{title}: ticked{}",
                    note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
                ),
                theme.good(),
            ),
            Event::StepSkipped { title, note, .. } => {
                (format!("{title}: skipped ({note})"), theme.dim())
            }
            Event::Confirmed { what } => (format!("confirmed: {what}"), theme.warn()),
            Event::Override { what, reason } => (format!("OVERRIDE {what}: {reason}"), theme.bad()),
            Event::Acknowledged { findings, reason } => (
                format!("acknowledged {}: {reason}", findings.join(", ")),
                theme.warn(),
            ),
            Event::Released {
                workflow,
                outcome,
                summary,
                not_applied,
                ..
            } => (
                format!(
                    "{workflow}: {outcome:?}: {summary}{}",
                    if not_applied.is_empty() {
                        String::new()
                    } else {
                        format!(" (not applied: {})", not_applied.join(", "))
                    }
                ),
                if *outcome == crate::journal::Outcome::Ok {
                    theme.good()
                } else {
                    theme.bad()
                },
            ),
            Event::HookRan {
                name,
                exit_code,
                timed_out,
                ..
            } => (
                format!(
                    "hook {name}: {}",
                    crate::journal::hook_ending(*exit_code, *timed_out)
                ),
                if *exit_code == Some(0) {
                    theme.good()
                } else {
                    theme.bad()
                },
            ),
            Event::MigrationStopped {
                migration,
                attempt,
                attempts,
                victims,
                longest_wait_ms,
                blocking_timeout_ms,
            } => (
                crate::migrate::deploy::describe_blocking(
                    migration,
                    *victims,
                    *longest_wait_ms,
                    *blocking_timeout_ms,
                    *attempt,
                    *attempts,
                    None,
                )
                .replace("; no attempts left", ""),
                theme.bad(),
            ),
            Event::SessionFinished => ("session finished".into(), Style::new()),
        };
        lines.push(Line::styled(
            format!("{} {:<10} {text}", e.at.format("%H:%M:%S"), e.operator),
            style,
        ));
    }
    let title = match &app.journal_path {
        Some(p) => format!(" Journal · {} ", p.display()),
        None => " Journal ".into(),
    };
    let width = area.width.saturating_sub(2).max(1);
    let mut shown: Vec<Line> = Vec::new();
    let mut rows = 0;
    for line in lines.into_iter().rev() {
        let taken = Paragraph::new(line.clone())
            .wrap(Wrap { trim: false })
            .line_count(width);
        if rows + taken > visible && !shown.is_empty() {
            break;
        }
        rows += taken;
        shown.push(line);
    }
    shown.reverse();
    f.render_widget(
        Paragraph::new(shown)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(title)),
        area,
    );
}
