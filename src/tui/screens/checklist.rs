//! The Checklist screen: the runbook's release checklist, pre / during / post. Automated items
//! run their job, manual ones are ticked with a note, optional ones skipped with one; the
//! selected item shows its live detail, its output, and why it is locked.

use std::time::Instant;

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, Paragraph, Wrap};

use crate::checklist::{Operation, Phase, State};
use crate::monitor::Signal;
use crate::release::SignalRequest;
use crate::tui::app::{App, Effect};
use crate::tui::deploying::Deploying;
use crate::tui::jobs::{Job, Origin};
use crate::tui::keymap::{Binding, Command, bind};
use crate::tui::modal::{Choice, Input, Modal, Then};
use crate::tui::theme::Theme;
use crate::tui::widgets::level_style;

pub const BINDINGS: &[Binding] = &[
    bind(
        &[KeyCode::Enter],
        "Enter",
        "run the step / tick it",
        Command::Activate,
        "run/tick",
    ),
    bind(
        &[KeyCode::Char('s')],
        "s",
        "skip an optional step (with a note)",
        Command::Skip,
        "skip",
    ),
    bind(
        &[KeyCode::Char('a')],
        "a",
        "acknowledge DANGEROUS findings (with a reason)",
        Command::Acknowledge,
        "acknowledge",
    ),
    bind(
        &[KeyCode::Char('x')],
        "x",
        "cancel the running step",
        Command::CancelStep,
        "cancel",
    ),
    bind(
        &[KeyCode::Char('K')],
        "K",
        "terminate the session a running deploy waits for",
        Command::Terminate,
        "",
    ),
];

/// DANGEROUS findings a person acknowledged for the next deploy, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Acknowledgement {
    /// Each as `path:line:col rule`.
    pub findings: Vec<String>,
    pub reason: String,
}

/// The screen's state besides the checklist itself.
#[derive(Debug, Clone, Default)]
pub struct ChecklistView {
    pub selected: usize,
    started: Vec<Option<Instant>>,
    pub acknowledged: Option<Acknowledgement>,
    /// The output of the step that ran last (which one: `log_of`).
    pub log: Vec<String>,
    pub log_of: Option<usize>,
}

impl ChecklistView {
    pub fn new(items: usize) -> ChecklistView {
        ChecklistView {
            started: vec![None; items],
            ..ChecklistView::default()
        }
    }

    pub fn started(&mut self, i: usize) {
        self.started[i] = Some(Instant::now());
        self.log.clear();
        self.log_of = Some(i);
    }

    /// Stops the clock of step `i`; how long it ran, in milliseconds.
    pub fn stopped(&mut self, i: usize) -> u64 {
        self.started[i]
            .take()
            .map(|t| t.elapsed().as_millis() as u64)
            .unwrap_or(0)
    }

    pub fn log(&mut self, line: String) {
        self.log.push(line);
        let excess = self.log.len().saturating_sub(200);
        self.log.drain(..excess);
    }
}

pub fn command(app: &mut App, command: Command) -> Vec<Effect> {
    match command {
        Command::Move(motion) => {
            // Among the items the filter lets through.
            let shown = shown(app);
            let at = shown
                .iter()
                .position(|i| *i >= app.steps.selected)
                .unwrap_or(0);
            if let Some(i) = shown.get(motion.apply(at, shown.len())) {
                app.steps.selected = *i;
            }
        }
        Command::Activate => return activate(app),
        Command::Skip => {
            let i = app.steps.selected;
            if !app.checklist.items[i].optional {
                app.flash = Some("only optional steps can be skipped".into());
            } else if let Some(why) = app.checklist.gate(i) {
                app.flash = Some(format!("locked: {why}"));
            } else {
                app.modal = Some(Modal::new(
                    format!("Skip '{}'", app.checklist.items[i].title),
                    vec!["Why is it not needed this time?".into()],
                    Input::Reason,
                    Then::Skip { index: i },
                ));
            }
        }
        Command::Acknowledge => {
            let open = app.checklist.facts.unacknowledged.clone();
            if open.is_empty() {
                app.flash = Some("no DANGEROUS findings wait for acknowledgement".into());
            } else {
                let mut lines: Vec<String> = open.iter().map(|f| format!("  {f}")).collect();
                lines.push(
                    "The reason (a change ticket, who agreed) goes in the journal; the deploy \
                     carries it for exactly these findings."
                        .into(),
                );
                app.modal = Some(Modal::new(
                    "Acknowledge DANGEROUS findings",
                    lines,
                    Input::Reason,
                    Then::AcknowledgeFindings { findings: open },
                ));
            }
        }
        Command::Terminate => return terminate_blocker(app),
        Command::CancelStep => {
            let Some(i) = app.checklist.running() else {
                app.flash = Some("no step is running".into());
                return Vec::new();
            };
            let title = app.checklist.items[i].title.clone();
            app.modal = Some(Modal::new(
                format!("Cancel '{title}'"),
                vec![
                    "Stops the step now. A statement running on the server is cancelled there and \
                     its transaction rolled back (a deploy keeps the migrations already applied; \
                     the one in flight is undone or, outside a transaction, left failed for \
                     resolve); a partial backup file is deleted; a hook is stopped with what it \
                     started."
                        .into(),
                ],
                Input::Yes,
                Then::Cancel(Origin::Step(i)),
            ));
        }
        _ => {}
    }
    Vec::new()
}

/// K: end the session at the head of the queue a running deploy waits in. The signal workflow
/// checks the backend is still the one seen and asks for the confirmation.
pub fn terminate_blocker(app: &mut App) -> Vec<Effect> {
    let root = app
        .deploying
        .as_ref()
        .and_then(|(_, d)| d.root_blocker(Instant::now()))
        .cloned();
    let Some(root) = root else {
        app.flash = Some("no running deploy waits for a lock".into());
        return Vec::new();
    };
    app.run(
        Origin::Monitor,
        Job::Signal(SignalRequest {
            pid: root.pid,
            backend_start: root.backend_start,
            signal: Signal::Terminate,
            confirmation: None,
            read_only: false,
        }),
    )
}

/// The items the filter (`/`) lets through, all without one.
fn shown(app: &App) -> Vec<usize> {
    let filter = app
        .filter_of(crate::tui::screens::Screen::Checklist)
        .to_lowercase();
    (0..app.checklist.items.len())
        .filter(|i| {
            filter.is_empty()
                || app.checklist.items[*i]
                    .title
                    .to_lowercase()
                    .contains(&filter)
        })
        .collect()
}

/// Enter: run an automated item, tick a manual one.
fn activate(app: &mut App) -> Vec<Effect> {
    let i = app.steps.selected;
    if let Some(why) = app.checklist.order_gate(i) {
        app.flash = Some(format!("locked: {why}"));
        return Vec::new();
    }
    let item = app.checklist.items[i].clone();
    if app.checklist.state(i).is_complete() && item.operation.is_none() {
        app.flash = Some("already ticked".into());
        return Vec::new();
    }
    let tick_by_hand = item.operation == Some(Operation::RollbackPlan)
        && matches!(app.checklist.state(i), State::Failed { .. });
    match item.operation {
        _ if tick_by_hand => {
            // The check again (a down.sql written since), or a tick saying where the plan is.
            app.modal = Some(Modal::new(
                format!("'{}' failed", item.title),
                vec!["Some pending migrations have no down.sql.".into()],
                Input::Choice(vec![
                    Choice {
                        key: 'r',
                        label: "check again (a down.sql was written since)".into(),
                        then: Then::Run {
                            origin: Origin::Step(i),
                            job: Box::new(Job::RollbackPlan),
                        },
                        input: Input::Yes,
                        title: String::new(),
                        lines: Vec::new(),
                    },
                    Choice {
                        key: 't',
                        label: "tick it by hand, saying where the rollback plan is".into(),
                        then: Then::Tick { index: i },
                        input: Input::Reason,
                        title: format!("Tick '{}' by hand", item.title),
                        lines: vec![
                            "Where is the rollback plan for the migrations without down.sql?"
                                .into(),
                        ],
                    },
                ]),
                Then::Close,
            ));
            Vec::new()
        }
        None => {
            app.modal = Some(Modal::new(
                format!("Tick '{}'", item.title),
                vec!["A note for the journal (optional): a link, a ticket, who checked".into()],
                Input::Note,
                Then::Tick { index: i },
            ));
            Vec::new()
        }
        Some(op) => {
            let job = Job::of(op).acknowledged(app.acknowledgements());
            app.run(Origin::Step(i), job)
        }
    }
}

/// A running deploy: where it is, and while it waits for a lock, who holds it and how to end
/// that.
pub fn deploying_lines(d: &Deploying, theme: Theme, now: Instant) -> Vec<Line<'static>> {
    let mut out = vec![Line::raw(d.headline())];
    if !d.preview.is_empty() {
        out.push(Line::styled(d.preview.clone(), theme.dim()));
    }
    if let Some((holders, waited)) = d.waits_for(now) {
        out.push(Line::styled(
            format!(
                "WAITING {:.0}s for a lock held by {} session(s):",
                waited.as_secs_f64(),
                holders.len()
            ),
            theme.bad(),
        ));
        for h in holders {
            out.push(Line::styled(format!("  {}", h.describe()), theme.warn()));
        }
        if let Some(root) = d.root_blocker(now) {
            out.push(Line::styled(
                format!(
                    "K: terminate pid {} (its transaction rolls back){}",
                    root.pid,
                    if root.cancel_helps() {
                        ""
                    } else {
                        "; it is idle in its transaction, so cancelling would not help"
                    }
                ),
                theme.bold(),
            ));
        }
    }
    if let Some(r) = &d.retried {
        out.push(Line::styled(r.clone(), theme.warn()));
    }
    if let Some(w) = &d.replica_wait {
        out.push(Line::styled(w.clone(), theme.warn()));
    }
    out
}

fn icon(state: &State) -> &'static str {
    match state {
        State::Locked(_) => "[·]",
        State::Ready => "[ ]",
        State::Running { .. } => "[>]",
        State::Done { .. } | State::Ticked { .. } => "[x]",
        State::Skipped { .. } => "[-]",
        State::Failed { .. } => "[!]",
    }
}

pub fn draw(app: &App, theme: Theme, f: &mut Frame, area: Rect) {
    // The list as wide as its longest title needs (44 at most), the detail the rest.
    let list_width = 44.min(area.width / 2 + 4);
    let [list_area, detail_area] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(0)]).areas(area);
    let c = &app.checklist;
    let mut lines = Vec::new();
    let mut selected_line = 0;
    let mut phase = None;
    let shown = shown(app);
    for (i, item) in c.items.iter().enumerate() {
        if !shown.contains(&i) {
            continue;
        }
        if phase != Some(item.phase) {
            phase = Some(item.phase);
            lines.push(Line::styled(
                item.phase.title(),
                Style::new().add_modifier(Modifier::BOLD),
            ));
        }
        let state = c.state(i);
        let style = match state {
            State::Done { .. } | State::Ticked { .. } => theme.good(),
            State::Failed { .. } => theme.bad(),
            State::Running { .. } => theme.warn().add_modifier(Modifier::BOLD),
            State::Locked(_) | State::Skipped { .. } => theme.dim(),
            State::Ready => Style::new(),
        };
        let style = if i == app.steps.selected {
            selected_line = lines.len();
            style.add_modifier(Modifier::REVERSED)
        } else {
            style
        };
        let kind = if item.operation.is_some() {
            ""
        } else {
            " (tick)"
        };
        lines.push(Line::styled(
            format!(" {} {}{kind}", icon(state), item.title),
            style,
        ));
    }
    let (done, total) = c.progress();
    let inner_height = list_area.height.saturating_sub(2) as usize;
    let scroll = selected_line.saturating_sub(inner_height.saturating_sub(1)) as u16;
    f.render_widget(
        Paragraph::new(lines)
            .scroll((scroll, 0))
            .block(Block::bordered().title(format!(" Checklist {done}/{total} "))),
        list_area,
    );

    let item = &c.items[app.steps.selected];
    let state = c.state(app.steps.selected);
    let mut detail = vec![
        Line::styled(
            item.title.clone(),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Line::styled(
            match item.operation {
                Some(_) => "runs by itself: Enter",
                None => "ticked by the operator: Enter (with an optional note)",
            },
            theme.dim(),
        ),
        Line::raw(""),
    ];
    let mut gauge = None;
    match state {
        State::Locked(why) => {
            detail.push(Line::styled("LOCKED", theme.warn()));
            detail.push(Line::raw(why.clone()));
        }
        State::Ready => detail.push(Line::raw("ready")),
        State::Running {
            detail: d,
            fraction,
        } => {
            detail.push(Line::styled("running…", theme.warn()));
            match app
                .deploying
                .as_ref()
                .filter(|(o, _)| *o == Origin::Step(app.steps.selected))
            {
                Some((_, dep)) => {
                    detail.extend(deploying_lines(dep, theme, Instant::now()));
                    gauge = dep.fraction().or(*fraction);
                }
                None => {
                    detail.push(Line::raw(d.clone()));
                    gauge = *fraction;
                }
            }
        }
        State::Done { summary } => {
            detail.push(Line::styled("done (Enter runs it again)", theme.good()));
            detail.push(Line::raw(summary.clone()));
        }
        State::Ticked { note } => {
            detail.push(Line::styled("ticked", theme.good()));
            if let Some(n) = note {
                detail.push(Line::raw(format!("note: {n}")));
            }
        }
        State::Skipped { note } => {
            detail.push(Line::styled("skipped", theme.dim()));
            detail.push(Line::raw(format!("note: {note}")));
        }
        State::Failed { cause } => {
            let label = if cause.starts_with("cancelled") {
                "CANCELLED (Enter runs it again)"
            } else {
                "FAILED (Enter runs it again)"
            };
            detail.push(Line::styled(label, theme.bad()));
            // The cause and its hint, each on its own line: the hint stays on screen.
            for line in cause.lines() {
                let style = if line.starts_with("hint: ") {
                    theme.warn()
                } else {
                    Style::new()
                };
                detail.push(Line::styled(line.to_owned(), style));
            }
        }
    }
    if (item.phase == Phase::During || item.id == "baseline" || item.id == "performance")
        && let Some(h) = &app.health
    {
        detail.push(Line::raw(""));
        detail.push(Line::styled(
            format!("health: {}", h.verdict.label()),
            level_style(theme, h.verdict),
        ));
        for check in h.checks.iter().take(8) {
            detail.push(Line::styled(
                format!(
                    "  {:<5} {} {}",
                    check.level.label(),
                    check.name,
                    check.value
                ),
                level_style(theme, check.level),
            ));
        }
    }
    if item.operation == Some(Operation::Deploy) && !app.left_in_place.is_empty() {
        detail.push(Line::raw(""));
        detail.push(Line::styled(
            format!(
                "The restore left in place tables made after its backup: {}. A pending \
                 migration that creates them fails: save what they hold and drop them first, or \
                 resolve it (Rollback screen, u).",
                app.left_in_place.join(", ")
            ),
            theme.bad(),
        ));
    }
    if item.operation == Some(Operation::Deploy) && !app.pending_again.is_empty() {
        detail.push(Line::raw(""));
        detail.push(Line::styled(
            format!(
                "A restore made these pending again: {}. Deploying now applies them again; fix \
                 or remove them first (Migrations screen, 3).",
                app.pending_again.join(", ")
            ),
            theme.bad(),
        ));
    }
    if !c.facts.unacknowledged.is_empty() {
        detail.push(Line::raw(""));
        detail.push(Line::styled(
            format!(
                "DANGEROUS, not acknowledged: {} (a: acknowledge)",
                c.facts.unacknowledged.join(", ")
            ),
            theme.bad(),
        ));
    }
    if let Some(a) = &app.steps.acknowledged {
        detail.push(Line::styled(
            format!("acknowledged {}: {}", a.findings.join(", "), a.reason),
            theme.warn(),
        ));
    }
    if app.steps.log_of == Some(app.steps.selected) && !app.steps.log.is_empty() {
        detail.push(Line::raw(""));
        for line in app.steps.log.iter().rev().take(8).rev() {
            detail.push(Line::styled(line.clone(), theme.dim()));
        }
    }
    let block = Block::bordered().title(" Step ");
    let inner = block.inner(detail_area);
    f.render_widget(block, detail_area);
    let [text_area, gauge_area] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(if gauge.is_some() { 1 } else { 0 }),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(detail).wrap(Wrap { trim: false }), text_area);
    if let Some(fr) = gauge {
        f.render_widget(
            Gauge::default()
                .ratio(fr.clamp(0.0, 1.0))
                .gauge_style(theme.good()),
            gauge_area,
        );
    }
}
