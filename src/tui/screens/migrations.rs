//! The Migrations screen: every migration with its status; the selected one's SQL with keywords
//! highlighted and its lint findings above it, or its down.sql; the plan's verdict.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Paragraph};

use crate::migrate::MigrationState;
use crate::tui::app::{App, Effect};
use crate::tui::jobs::MigrationsView;
use crate::tui::keymap::{Binding, Command, MOVE, bind};
use crate::tui::theme::Theme;

pub const BINDINGS: &[Binding] = &[
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

#[derive(Debug, Clone)]
pub struct MigrationsScreen {
    /// Not loaded yet, loaded, or why it could not be.
    pub data: Result<Option<Box<MigrationsView>>, String>,
    pub selected: usize,
    pub show_down: bool,
}

impl Default for MigrationsScreen {
    fn default() -> Self {
        MigrationsScreen {
            data: Ok(None),
            selected: 0,
            show_down: false,
        }
    }
}

impl MigrationsScreen {
    pub fn view(&self) -> Option<&MigrationsView> {
        self.data.as_ref().ok().and_then(|v| v.as_deref())
    }
}

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    let n = app
        .migrations
        .view()
        .map(|v| v.status.migrations.len())
        .unwrap_or(0);
    let m = &mut app.migrations;
    match command {
        Command::Down => m.selected = (m.selected + 1).min(n.saturating_sub(1)),
        Command::Up => m.selected = m.selected.saturating_sub(1),
        Command::ToggleDown => m.show_down = !m.show_down,
        _ => {}
    }
    Vec::new()
}

pub fn draw(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let view = match &app.migrations.data {
        Ok(Some(v)) => v,
        Ok(None) => {
            f.render_widget(
                Paragraph::new("loading migrations…")
                    .block(Block::bordered().title(" Migrations ")),
                area,
            );
            return;
        }
        Err(e) => {
            f.render_widget(
                Paragraph::new(Line::styled(format!("error: {e}"), theme.bad()))
                    .block(Block::bordered().title(" Migrations ")),
                area,
            );
            return;
        }
    };
    let [list_area, sql_area] =
        Layout::horizontal([Constraint::Length(46), Constraint::Min(0)]).areas(area);
    let mut lines = Vec::new();
    for (i, m) in view.status.migrations.iter().enumerate() {
        let (icon, style) = match &m.state {
            MigrationState::Applied { .. } => ("✓", theme.good()),
            MigrationState::Pending => ("·", Style::new()),
            MigrationState::RolledBack { .. } => ("↺", theme.warn()),
            MigrationState::Failed { .. } => ("✗", theme.bad()),
            MigrationState::Edited { .. } => ("≠", theme.warn()),
            MigrationState::MissingLocally { .. } => ("?", theme.warn()),
        };
        let style = if i == app.migrations.selected {
            style.add_modifier(Modifier::REVERSED)
        } else {
            style
        };
        lines.push(Line::styled(
            format!("{icon} {}", m.name.chars().take(42).collect::<String>()),
            style,
        ));
    }
    let verdict = format!(" Migrations · plan: {:?} ", view.plan.verdict());
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(verdict)),
        list_area,
    );

    let Some(selected) = view.status.migrations.get(app.migrations.selected) else {
        f.render_widget(Block::bordered(), sql_area);
        return;
    };
    let local = view.dir.get(&selected.name);
    let plan = view
        .plan
        .migrations
        .iter()
        .find(|p| p.name == selected.name);
    let mut text = Text::default();
    if let Some(p) = plan {
        for finding in &p.lint.findings {
            let style = match finding.severity {
                crate::lint::Severity::Dangerous => theme.bad(),
                _ => theme.warn(),
            };
            text.push_line(Line::styled(
                format!(
                    "{}:{} {:?} {}: {}",
                    finding.line, finding.column, finding.severity, finding.rule, finding.message
                ),
                style,
            ));
        }
        if !p.lint.findings.is_empty() {
            text.push_line(Line::raw(""));
        }
    }
    let (title, sql) = match (app.migrations.show_down, local) {
        (false, Some(l)) => ("migration.sql", l.sql().to_owned()),
        (true, Some(l)) => (
            "down.sql",
            l.down.clone().unwrap_or_else(|| {
                "-- no down.sql: a rollback needs a restore or a hand-written migration".into()
            }),
        ),
        (_, None) => ("", "-- not in the local folder".into()),
    };
    for line in sql.lines() {
        text.push_line(highlight(line, theme));
    }
    f.render_widget(
        Paragraph::new(text).block(Block::bordered().title(format!(" {} {title} ", selected.name))),
        sql_area,
    );
}

/// SQL keywords bold, comments dim.
fn highlight(line: &str, theme: Theme) -> Line<'static> {
    const KEYWORDS: &[&str] = &[
        "SELECT",
        "FROM",
        "WHERE",
        "CREATE",
        "TABLE",
        "ALTER",
        "ADD",
        "DROP",
        "COLUMN",
        "INDEX",
        "CONCURRENTLY",
        "ON",
        "NOT",
        "NULL",
        "DEFAULT",
        "PRIMARY",
        "KEY",
        "REFERENCES",
        "UNIQUE",
        "CONSTRAINT",
        "INSERT",
        "INTO",
        "VALUES",
        "UPDATE",
        "SET",
        "DELETE",
        "BEGIN",
        "COMMIT",
        "IF",
        "EXISTS",
        "TYPE",
        "RENAME",
        "TO",
        "FOREIGN",
        "CASCADE",
        "USING",
    ];
    if line.trim_start().starts_with("--") {
        return Line::styled(line.to_owned(), theme.dim());
    }
    let mut spans = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, spans: &mut Vec<Span<'static>>| {
        if word.is_empty() {
            return;
        }
        let style = if KEYWORDS.contains(&word.to_ascii_uppercase().as_str()) {
            theme.fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(std::mem::take(word), style));
    };
    for c in line.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut spans);
            spans.push(Span::raw(c.to_string()));
        }
    }
    flush(&mut word, &mut spans);
    Line::from(spans)
}
