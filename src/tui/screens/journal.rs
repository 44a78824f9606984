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
    "report",
)];

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    if let Command::Move(motion) = command {
        // From following the newest entry, a move starts at it.
        let n = app.journal.len();
        let at = app.journal_selected.unwrap_or(n.saturating_sub(1));
        let next = motion.apply(at, n);
        app.journal_selected = if next + 1 >= n { None } else { Some(next) };
        return Vec::new();
    }
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
    let filter = app
        .filter_of(crate::tui::screens::Screen::Journal)
        .to_lowercase();
    // Entries wrap, whole: the window ends at the selected entry (the newest while following).
    let end = app
        .journal_selected
        .map_or(app.journal.len(), |i| (i + 1).min(app.journal.len()));
    let skip = end.saturating_sub(visible.max(1) * 4);
    for e in app.journal.iter().take(end).skip(skip) {
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
                    "{title}: {} in {:.1}s: {summary}",
                    outcome.label(),
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
            Event::RestorePointCreated {
                name, lsn, stanza, ..
            } => (
                format!("restore point {name} at {lsn} (pgBackRest stanza {stanza})"),
                theme.good(),
            ),
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
                    "{workflow}: {}: {summary}{}",
                    outcome.label(),
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
            Event::FleetReleased {
                fleet,
                outcome,
                summary,
                ..
            } => (
                format!("fleet deploy {fleet}: {}: {summary}", outcome.label()),
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
            Event::ReplicaWaited {
                before,
                replica,
                waited_ms,
            } => (
                format!(
                    "deploy waited {} for replica {replica} before {before}",
                    crate::units::human_duration(std::time::Duration::from_millis(*waited_ms))
                ),
                theme.warn(),
            ),
            Event::SessionFinished => ("session finished".into(), Style::new()),
        };
        // A summary's hint is on a line of its own: here it stays on the entry's.
        let line = format!(
            "{} {:<10} {}",
            e.at.format("%H:%M:%S"),
            e.operator,
            text.replace('\n', " · ")
        );
        if !filter.is_empty() && !line.to_lowercase().contains(&filter) {
            continue;
        }
        lines.push(Line::styled(line, style));
    }
    let position = match app.journal_selected {
        None => "newest".to_owned(),
        Some(i) => format!("entry {} of {}", i + 1, app.journal.len()),
    };
    let title = match &app.journal_path {
        Some(p) => format!(" Journal · {position} · {} ", p.display()),
        None => format!(" Journal · {position} "),
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
