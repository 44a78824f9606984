//! The Migrations screen: every migration with its status; the selected one's SQL with keywords
//! highlighted and its lint findings above it, or its down.sql; the plan's verdict. `e` shows
//! every configured environment side by side instead (each migration's state in each, and each
//! environment's verdict or why it could not be read), read in the background.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Paragraph, Wrap};

use chrono::{DateTime, Utc};

use crate::migrate::MigrationState;
use crate::release::{Cell, Matrix};
use crate::tui::app::{App, Effect, PlanView};
use crate::tui::jobs::MigrationsView;
use crate::tui::keymap::{Binding, Command, bind};
use crate::tui::screens::Screen;
use crate::tui::theme::Theme;

pub const BINDINGS: &[Binding] = &[
    bind(
        &[KeyCode::Char('e')],
        "e",
        "every environment side by side (read in the background, again every 10 s while shown); e again: back to this one",
        Command::ToggleEnvironments,
        "all envs",
    ),
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
    /// The matrix of every environment is on show instead of this one's migrations.
    pub environments_shown: bool,
    pub environments: EnvironmentsView,
}

impl Default for MigrationsScreen {
    fn default() -> Self {
        MigrationsScreen {
            data: Ok(None),
            selected: 0,
            show_down: false,
            on_text: false,
            scroll: 0,
            environments_shown: false,
            environments: EnvironmentsView::default(),
        }
    }
}

/// Every environment's status, as last read: loading (nothing read yet), loaded, stale (the
/// last read, while reading again or after a read that failed) or failed.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentsView {
    /// The last matrix read, and when.
    pub last: Option<(Box<Matrix>, DateTime<Utc>)>,
    /// A read is under way.
    pub reading: bool,
    /// Why the last read failed, and when.
    pub failed: Option<(String, DateTime<Utc>)>,
    pub selected: usize,
}

impl EnvironmentsView {
    /// A read ended.
    pub fn fold(&mut self, result: Result<Box<Matrix>, String>, at: DateTime<Utc>) {
        self.reading = false;
        match result {
            Ok(m) => {
                self.selected = self.selected.min(m.rows.len().saturating_sub(1));
                self.last = Some((m, at));
                self.failed = None;
            }
            Err(cause) => self.failed = Some((cause, at)),
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

/// The matrix's rows as listed: those matching the filter.
fn matrix_rows<'a>(app: &'a App, m: &'a Matrix) -> Vec<&'a crate::release::Row> {
    let filter = app.filter_of(Screen::Migrations).to_lowercase();
    m.rows
        .iter()
        .filter(|r| filter.is_empty() || r.name.to_lowercase().contains(&filter))
        .collect()
}

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    if command == Command::ToggleEnvironments {
        app.migrations.environments_shown = !app.migrations.environments_shown;
        // Read again each time it is opened; the last read shows meanwhile, marked stale.
        if app.migrations.environments_shown && !app.migrations.environments.reading {
            return app.read_environments();
        }
        return Vec::new();
    }
    if app.migrations.environments_shown
        && let Command::Move(motion) = command
    {
        let n = match &app.migrations.environments.last {
            Some((m, _)) => matrix_rows(app, m).len(),
            None => 0,
        };
        let v = &mut app.migrations.environments;
        v.selected = motion.apply(v.selected, n);
        return Vec::new();
    }
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
    if app.migrations.environments_shown {
        draw_environments(app, theme, f, area, Utc::now());
        return;
    }
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

/// A cell's style: what needs someone stands out.
fn cell_style(theme: Theme, cell: Cell) -> Style {
    match cell {
        Cell::Applied => theme.good(),
        Cell::Pending => Style::new(),
        Cell::RolledBack | Cell::Edited | Cell::MissingLocally => theme.warn(),
        Cell::Failed => theme.bad(),
        Cell::Absent => theme.dim(),
    }
}

/// `text` in at most `width` characters, its end cut with `…`.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// `text` in lines of at most `width` characters, broken between words (a word longer than a
/// line is cut).
fn wrapped(text: &str, width: usize) -> Vec<String> {
    let width = width.max(10);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_owned();
        loop {
            let used = line.chars().count();
            let need = word.chars().count() + usize::from(used > 0);
            if used + need <= width {
                if used > 0 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // Longer than a whole line: cut.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn pad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(n)))
}

/// Every environment side by side: each one's verdict (or why it was not read) above, the
/// migrations by environment below. `now` dates a stale read.
fn draw_environments(app: &App, theme: Theme, f: &mut Frame, area: Rect, now: DateTime<Utc>) {
    let v = &app.migrations.environments;
    let Some((m, at)) = &v.last else {
        let text = match &v.failed {
            Some((cause, _)) => Text::from(
                cause
                    .lines()
                    .enumerate()
                    .map(|(i, l)| {
                        if i == 0 {
                            Line::styled(format!("error: {l}"), theme.bad())
                        } else {
                            Line::raw(l.to_owned())
                        }
                    })
                    .collect::<Vec<_>>(),
            ),
            None => Text::raw("reading the status of every environment…"),
        };
        f.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" Environments ")),
            area,
        );
        return;
    };
    let mut title = format!(" Environments · read at {} UTC", at.format("%H:%M:%S"));
    if v.reading {
        title.push_str(" · reading again…");
    } else if v.failed.is_some() {
        let age = (now - *at).num_seconds().max(0);
        title.push_str(&format!(" · stale, {age}s old"));
    }
    let filter = app.filter_of(Screen::Migrations);
    if !filter.is_empty() {
        title.push_str(&format!(" · /{filter}"));
    }
    title.push(' ');

    // The verdict over all, then each environment's, or what stopped it and what to do,
    // wrapped under its own column of text.
    let inner_width = area.width.saturating_sub(2);
    let mut summary: Vec<Line> = Vec::new();
    if let Some((cause, _)) = &v.failed {
        summary.push(Line::styled(
            format!(
                "the last read failed: {}",
                cause.lines().next().unwrap_or_default()
            ),
            theme.bad(),
        ));
    }
    summary.push(Line::styled(
        format!("over all: {}", m.overall().label()),
        theme.bold(),
    ));
    let label_width = m
        .columns
        .iter()
        .map(|c| c.name.chars().count() + if c.protected { 12 } else { 0 })
        .max()
        .unwrap_or(0)
        .min(usize::from(inner_width) / 3);
    let text_width = usize::from(inner_width).saturating_sub(label_width + 2);
    for c in &m.columns {
        let name = format!(
            "{}{}",
            c.name,
            if c.protected { " (protected)" } else { "" }
        );
        let style = match c.verdict() {
            Some(crate::migrate::Verdict::UpToDate) => theme.good(),
            Some(crate::migrate::Verdict::Pending) => Style::new(),
            _ => theme.bad(),
        };
        let name_style = if c.protected {
            theme.bad()
        } else {
            theme.bold()
        };
        let mut label = Some(pad(&fit(&name, label_width), label_width));
        let mut said = vec![(c.summary(), style)];
        if let Some(e) = c.error() {
            said.push((
                format!("hint: {}", crate::tui::widgets::hint(e)),
                theme.dim(),
            ));
        }
        for (text, style) in said {
            for piece in wrapped(&text, text_width) {
                let head = label.take().unwrap_or_else(|| " ".repeat(label_width));
                summary.push(Line::from(vec![
                    Span::styled(head, name_style),
                    Span::raw("  "),
                    Span::styled(piece, style),
                ]));
            }
        }
    }
    let legend: Vec<String> = m
        .legend()
        .into_iter()
        .map(|c| format!("{} {}", c.word(), c.meaning().unwrap_or_default()))
        .collect();
    if !legend.is_empty() {
        for piece in wrapped(&legend.join(" · "), usize::from(inner_width)) {
            summary.push(Line::styled(piece, theme.dim()));
        }
    }
    // The table keeps its header and a few rows.
    let wanted = summary.len() as u16 + 2;
    let [top, bottom] = Layout::vertical([
        Constraint::Length(wanted.min(area.height.saturating_sub(6))),
        Constraint::Min(0),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(summary).block(Block::bordered().title(title)),
        top,
    );

    // The migrations by environment, fitted to the width: the names give way first.
    let rows = matrix_rows(app, m);
    let word = |c: &crate::release::Column, cell: Option<Cell>| match cell {
        Some(cell) => cell.word(),
        None => c.problem().unwrap_or("?"),
    };
    let widths: Vec<usize> = m
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| word(c, r.cells.get(i).copied().flatten()).chars().count())
                .max()
                .unwrap_or(0)
                .max(c.name.chars().count().min(16))
        })
        .collect();
    let fixed: usize = widths.iter().map(|w| w + 2).sum();
    let name_width = (inner_width as usize).saturating_sub(fixed).max(20).min(
        rows.iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(9)
            .max(9),
    );
    let mut header = vec![Span::styled(pad("MIGRATION", name_width), theme.bold())];
    for (c, w) in m.columns.iter().zip(&widths) {
        header.push(Span::raw("  "));
        let style = if c.protected {
            theme.bad()
        } else {
            theme.bold()
        };
        header.push(Span::styled(pad(&fit(&c.name, *w), *w), style));
    }
    let mut lines = vec![Line::from(header)];
    let visible = bottom.height.saturating_sub(3) as usize;
    let start = v.selected.saturating_sub(visible.saturating_sub(1));
    for (i, r) in rows.iter().enumerate().skip(start).take(visible) {
        let selected = i == v.selected;
        let mut spans = vec![Span::styled(
            pad(&fit(&r.name, name_width), name_width),
            if selected {
                theme.selected()
            } else {
                Style::new()
            },
        )];
        for (j, (c, w)) in m.columns.iter().zip(&widths).enumerate() {
            let cell = r.cells.get(j).copied().flatten();
            spans.push(Span::raw("  "));
            let style = match cell {
                Some(cell) => cell_style(theme, cell),
                None => theme.dim(),
            };
            spans.push(Span::styled(pad(word(c, cell), *w), style));
        }
        lines.push(Line::from(spans));
    }
    if rows.is_empty() {
        lines.push(Line::styled(
            if m.rows.is_empty() {
                "no migrations in any environment's folder or database"
            } else {
                "no migration matches"
            },
            theme.dim(),
        ));
    }
    f.render_widget(
        Paragraph::new(lines).block(
            Block::bordered().title(format!(" Migrations by environment ({}) ", m.rows.len())),
        ),
        bottom,
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

#[cfg(test)]
mod tests {
    #[test]
    fn text_wraps_between_words_and_cuts_only_a_word_longer_than_a_line() {
        assert_eq!(
            super::wrapped("cannot connect to db:5432: refused", 16),
            ["cannot connect", "to db:5432:", "refused"]
        );
        assert_eq!(
            super::wrapped("postgresql://a-very-long-host/app x", 12),
            ["postgresql:/", "/a-very-long", "-host/app x"]
        );
        assert_eq!(super::wrapped("", 12), [""]);
    }
}
