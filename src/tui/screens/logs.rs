//! The Logs screen, the runbook's "tail -f logs/application.log" beside the panes: the
//! application's log (a file, or a command's output) and the server's own, each line classed
//! (errors, lock waits, deadlocks, cancelled statements highlighted), error lines counted per
//! minute against the environment's threshold, which raises the header's alert.

use chrono::Utc;
use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::monitor::logs::{LineClass, LogState, LogTail};
use crate::tui::app::{App, Effect};
use crate::tui::keymap::{Binding, Command, bind};
use crate::tui::screens::Screen;
use crate::tui::theme::Theme;

pub const BINDINGS: &[Binding] = &[
    bind(
        &[KeyCode::Left, KeyCode::Char('h')],
        "h/l",
        "focus the application log / the server log",
        Command::Left,
        "focus",
    ),
    bind(
        &[KeyCode::Right, KeyCode::Char('l')],
        "l / Right",
        "focus the server log",
        Command::Right,
        "",
    ),
];

/// Which log a follower feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    App,
    Server,
}

/// The two logs and where the operator is in them.
#[derive(Debug, Clone)]
pub struct LogsView {
    /// None: the environment names no application log.
    pub app: Option<LogTail>,
    pub server: LogTail,
    pub on_server: bool,
    /// Lines from the newest up, per log (0: following the newest).
    pub back: [usize; 2],
}

impl LogsView {
    pub fn new(app_log: bool, alert_per_minute: u32) -> LogsView {
        LogsView {
            app: app_log.then(|| LogTail::new(alert_per_minute)),
            server: LogTail::new(alert_per_minute),
            on_server: false,
            back: [0, 0],
        }
    }

    pub fn tail_mut(&mut self, which: Which) -> Option<&mut LogTail> {
        match which {
            Which::App => self.app.as_mut(),
            Which::Server => Some(&mut self.server),
        }
    }

    /// The alerts of both logs, now.
    pub fn alerts(&self) -> Vec<String> {
        let now = Utc::now();
        self.app
            .iter()
            .map(|t| ("application log", t))
            .chain(std::iter::once(("server log", &self.server)))
            .filter_map(|(name, t)| t.alert(now).map(|a| format!("{name}: {a}")))
            .collect()
    }
}

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    let v = &mut app.logs;
    match command {
        Command::Left | Command::Right => v.on_server = command == Command::Right,
        Command::Move(motion) => {
            let i = usize::from(v.on_server);
            let len = if v.on_server {
                v.server.lines().len()
            } else {
                v.app.as_ref().map_or(0, |t| t.lines().len())
            };
            // Up goes back in time: the list is drawn newest last.
            use crate::tui::keymap::Motion as M;
            let flipped = match motion {
                M::Up => M::Down,
                M::Down => M::Up,
                M::PageUp => M::PageDown,
                M::PageDown => M::PageUp,
                M::Top => M::Bottom,
                M::Bottom => M::Top,
            };
            v.back[i] = flipped.apply(v.back[i], len);
        }
        _ => {}
    }
    Vec::new()
}

fn class_style(theme: Theme, class: LineClass) -> Style {
    match class {
        LineClass::Error | LineClass::Deadlock => theme.bad(),
        LineClass::Cancelled | LineClass::Terminated | LineClass::LockWait => theme.warn(),
        LineClass::Warning => theme.warn(),
        LineClass::Notice => theme.dim(),
        LineClass::Plain => Style::new(),
    }
}

fn state_line(state: &LogState, theme: Theme) -> Option<Line<'static>> {
    Some(match state {
        LogState::Following { .. } => return None,
        LogState::Starting => Line::styled("starting…", theme.dim()),
        LogState::Waiting { reason, .. } => Line::styled(reason.clone(), theme.warn()),
        LogState::Exited {
            what,
            status,
            restart_in_ms,
        } => Line::styled(
            format!(
                "{what} ended ({status}); started again in {:.0}s",
                *restart_in_ms as f64 / 1000.0
            ),
            theme.warn(),
        ),
        LogState::Unavailable { reason, hint } => {
            Line::styled(format!("{reason} ({hint})"), theme.dim())
        }
        LogState::Error { cause, hint, .. } => {
            Line::styled(format!("error: {cause} ({hint})"), theme.bad())
        }
    })
}

/// One log pane: which log, how far back from the newest, whether it has the focus.
struct Pane<'a> {
    name: &'a str,
    tail: Option<&'a LogTail>,
    back: usize,
    focused: bool,
}

fn draw_tail(app: &App, pane: Pane<'_>, theme: Theme, f: &mut Frame, area: Rect) {
    let Pane {
        name,
        tail,
        back,
        focused,
    } = pane;
    let filter = app.filter_of(Screen::Logs).to_lowercase();
    let Some(tail) = tail else {
        f.render_widget(
            Paragraph::new(Line::styled(
                "no application log configured: set app_log (a file) or app_log_command \
                 (e.g. kubectl logs -f deploy/api) for the environment in pgdeck.toml",
                theme.dim(),
            ))
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(format!(" {name} "))),
            area,
        );
        return;
    };
    let now = Utc::now();
    let per_minute = tail.errors_per_minute(now);
    let counts: Vec<String> = per_minute.iter().map(u32::to_string).collect();
    let last = tail.errors_last_minute(now);
    let following = match tail.state() {
        LogState::Following { what, .. } => what.clone(),
        _ => String::new(),
    };
    let alert = tail.alert(now);
    let title = vec![
        Span::raw(format!(" {name} {following} · ")),
        Span::styled(
            format!("errors last 60s: {last}"),
            if alert.is_some() {
                theme.bad()
            } else {
                Style::new()
            },
        ),
        Span::styled(
            format!(" · per minute, oldest first: {} ", counts.join(" ")),
            theme.dim(),
        ),
    ];
    let block = Block::bordered()
        .title(Line::from(title))
        .border_style(if focused { theme.bold() } else { Style::new() });
    let inner = block.inner(area);
    f.render_widget(block, area);
    // What the follower is doing, wrapped on top; the newest lines below, one row each.
    let state =
        state_line(tail.state(), theme).map(|l| Paragraph::new(l).wrap(Wrap { trim: false }));
    let state_rows = state
        .as_ref()
        .map_or(0, |p| p.line_count(inner.width.max(1)) as u16)
        .min(inner.height);
    let [state_area, lines_area] =
        Layout::vertical([Constraint::Length(state_rows), Constraint::Min(0)]).areas(inner);
    if let Some(p) = state {
        f.render_widget(p, state_area);
    }
    let rows = lines_area.height as usize;
    let shown: Vec<_> = tail
        .lines()
        .iter()
        .filter(|l| filter.is_empty() || l.text.to_lowercase().contains(&filter))
        .collect();
    let end = shown.len().saturating_sub(back);
    let start = end.saturating_sub(rows);
    let mut lines: Vec<Line> = Vec::new();
    for l in &shown[start..end] {
        let style = if l.context {
            theme.dim()
        } else {
            class_style(theme, l.class)
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{} ", l.at.format("%H:%M:%S")), theme.dim()),
            Span::styled(format!("{:<8} ", l.class.tag()), style),
            Span::styled(l.text.clone(), style),
        ]));
    }
    if shown.is_empty() && state_rows == 0 {
        lines.push(Line::styled("no lines yet", theme.dim()));
    }
    f.render_widget(Paragraph::new(lines), lines_area);
}

pub fn draw(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    let v = &app.logs;
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
    let app_pane = Pane {
        name: "Application log",
        tail: v.app.as_ref(),
        back: v.back[0],
        focused: !v.on_server,
    };
    draw_tail(app, app_pane, theme, f, top);
    let server_pane = Pane {
        name: "Server log",
        tail: Some(&v.server),
        back: v.back[1],
        focused: v.on_server,
    };
    draw_tail(app, server_pane, theme, f, bottom);
}
