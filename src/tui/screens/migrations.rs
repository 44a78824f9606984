//! The Migrations screen: every migration with its status; the selected one's SQL with keywords
//! highlighted and its lint findings above it, or its down.sql; the plan's verdict.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::migrate::MigrationState;
use crate::tui::app::{App, Effect, PlanView};
use crate::tui::jobs::MigrationsView;
use crate::tui::keymap::{Binding, Command, bind};
use crate::tui::screens::Screen;
use crate::tui::theme::Theme;

pub const BINDINGS: &[Binding] = &[
    bind(
        &[KeyCode::Char('d')],
        "d",
        "show migration.sql / down.sql, each with its own findings",
        Command::ToggleDown,
        "sql/down",
    ),
    bind(
        &[KeyCode::Char('p')],
        "p",
        "the whole plan of the pending migrations",
        Command::Activate,
        "plan",
    ),
    bind(
        &[KeyCode::Left, KeyCode::Char('h')],
        "h/l",
        "focus the list / the SQL (then j/k scroll it)",
        Command::Left,
        "focus",
    ),
    bind(
        &[KeyCode::Right, KeyCode::Char('l')],
        "l / Right",
        "focus the SQL",
        Command::Right,
        "",
    ),
];

#[derive(Debug, Clone)]
pub struct MigrationsScreen {
    /// Not loaded yet, loaded, or why it could not be.
    pub data: Result<Option<Box<MigrationsView>>, String>,
    pub selected: usize,
    pub show_down: bool,
    /// The SQL pane has the focus: j/k scroll it.
    pub on_text: bool,
    pub scroll: usize,
}

impl Default for MigrationsScreen {
    fn default() -> Self {
        MigrationsScreen {
            data: Ok(None),
            selected: 0,
            show_down: false,
            on_text: false,
            scroll: 0,
        }
    }
}

impl MigrationsScreen {
    pub fn view(&self) -> Option<&MigrationsView> {
        self.data.as_ref().ok().and_then(|v| v.as_deref())
    }
}

/// The migrations as listed: those matching the filter.
fn listed(app: &App) -> Vec<&crate::migrate::status::MigrationStatus> {
    let filter = app.filter_of(Screen::Migrations).to_lowercase();
    match app.migrations.view() {
        Some(v) => v
            .status
            .migrations
            .iter()
            .filter(|m| filter.is_empty() || m.name.to_lowercase().contains(&filter))
            .collect(),
        None => Vec::new(),
    }
}

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    let n = listed(app).len();
    match command {
        Command::Move(motion) if app.migrations.on_text => {
            app.migrations.scroll = motion.apply(app.migrations.scroll, 10_000);
        }
        Command::Move(motion) => {
            app.migrations.selected = motion.apply(app.migrations.selected, n);
            app.migrations.scroll = 0;
        }
        Command::Left | Command::Right => app.migrations.on_text = command == Command::Right,
        Command::ToggleDown => {
            app.migrations.show_down = !app.migrations.show_down;
            app.migrations.scroll = 0;
        }
        Command::Activate => match app.migrations.view() {
            Some(v) => {
                let heading = format!("Plan for {} (environment {})", app.env.target, app.env.name);
                let text = crate::lint::report::render_plan(&heading, &v.plan, &v.dir);
                app.plan_view = Some(PlanView::of(&text));
            }
            None => app.flash = Some("the migrations are not loaded yet".into()),
        },
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
                    .wrap(Wrap { trim: false })
                    .block(Block::bordered().title(" Migrations ")),
                area,
            );
            return;
        }
    };
    let list_width = (area.width / 3).clamp(28, 46);
    let [list_area, sql_area] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(0)]).areas(area);
    let shown = listed(app);
    let visible = list_area.height.saturating_sub(2) as usize;
    let start = app
        .migrations
        .selected
        .saturating_sub(visible.saturating_sub(1));
    let mut lines = Vec::new();
    for (i, m) in shown.iter().enumerate().skip(start).take(visible) {
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
        let width = list_width.saturating_sub(4) as usize;
        lines.push(Line::styled(
            format!("{icon} {}", m.name.chars().take(width).collect::<String>()),
            style,
        ));
    }
    if shown.is_empty() {
        lines.push(Line::styled("no migration matches", theme.dim()));
    }
    let filter = app.filter_of(Screen::Migrations);
    let verdict = format!(
        " Migrations · plan: {}{} ",
        view.plan.verdict().label(),
        if filter.is_empty() {
            String::new()
        } else {
            format!(" · /{filter}")
        }
    );
    let focus = |on: bool| if on { theme.bold() } else { Style::new() };
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(verdict)
                .border_style(focus(!app.migrations.on_text)),
        ),
        list_area,
    );

    let Some(selected) = shown.get(app.migrations.selected) else {
        f.render_widget(Block::bordered(), sql_area);
        return;
    };
    let local = view.dir.get(&selected.name);
    // Each file with its own findings: the plan's for migration.sql, down.sql's own for it.
    let findings = if app.migrations.show_down {
        view.down_lints.get(&selected.name)
    } else {
        view.plan
            .migrations
            .iter()
            .find(|p| p.name == selected.name)
            .map(|p| &p.lint)
    };
    let mut text = Text::default();
    if let Some(lint) = findings {
        for finding in &lint.findings {
            let style = match finding.severity {
                crate::lint::Severity::Dangerous => theme.bad(),
                _ => theme.warn(),
            };
            text.push_line(Line::styled(
                format!(
                    "{}:{} {} {}: {}",
                    finding.line,
                    finding.column,
                    finding.severity.label(),
                    finding.rule,
                    finding.message
                ),
                style,
            ));
        }
        if !lint.findings.is_empty() {
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
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .scroll((app.migrations.scroll.min(u16::MAX as usize) as u16, 0))
            .block(
                Block::bordered()
                    .title(format!(" {} {title} ", selected.name))
                    .border_style(focus(app.migrations.on_text)),
            ),
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
