//! The fleet matrix: a fleet deploy's databases as rows, each with its live state (waiting,
//! canary, deploying migration i/n, health, applied, failed, not started), folded from the
//! release room's fleet events. Its state changes only in [`FleetBoard::fold`]; drawing reads it.

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};

use crate::release::{FleetEvent, MemberOutcome, Phase, migration_progress};
use crate::tui::theme::Theme;

/// What a database of the fleet is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberState {
    Waiting,
    /// Started; no migration yet (its guards being checked).
    Starting,
    Deploying {
        index: usize,
        total: usize,
    },
    /// A canary's health being checked.
    Health,
    Done(MemberOutcome),
}

impl MemberState {
    fn word(&self) -> String {
        match self {
            MemberState::Waiting => "waiting".into(),
            MemberState::Starting => "starting".into(),
            MemberState::Deploying { index, total } => format!("migration {index}/{total}"),
            MemberState::Health => "health".into(),
            MemberState::Done(o) => o.label().into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MemberRow {
    pub name: String,
    pub canary: bool,
    pub protected: bool,
    pub state: MemberState,
    /// The last thing it said: a migration, a refusal, its health.
    pub detail: String,
}

/// The fleet as the console shows it.
#[derive(Debug, Clone, Default)]
pub struct FleetBoard {
    pub fleet: String,
    pub concurrency: usize,
    pub max_failures: usize,
    pub phase: Option<Phase>,
    pub members: Vec<MemberRow>,
    pub stopped: Option<String>,
    /// When the deploy was planned, for the elapsed time.
    pub started: Option<Instant>,
    /// The first row shown.
    pub scroll: usize,
    pub finished: bool,
}

impl FleetBoard {
    pub fn new(fleet: &str) -> FleetBoard {
        FleetBoard {
            fleet: fleet.to_owned(),
            ..FleetBoard::default()
        }
    }

    /// Folds one event of the fleet deploy into the board.
    pub fn fold(&mut self, event: &FleetEvent) {
        match event {
            FleetEvent::Planned {
                fleet,
                members,
                concurrency,
                max_failures,
            } => {
                self.fleet = fleet.clone();
                self.concurrency = *concurrency;
                self.max_failures = *max_failures;
                self.started = Some(Instant::now());
                self.members = members
                    .iter()
                    .map(|m| MemberRow {
                        name: m.name.clone(),
                        canary: m.canary,
                        protected: m.protected,
                        state: MemberState::Waiting,
                        detail: String::new(),
                    })
                    .collect();
            }
            FleetEvent::Phase(p) => {
                self.phase = Some(*p);
                if *p == Phase::Health {
                    for m in self.members.iter_mut().filter(|m| m.canary) {
                        if m.state == MemberState::Done(MemberOutcome::Applied)
                            || m.state == MemberState::Done(MemberOutcome::UpToDate)
                        {
                            m.state = MemberState::Health;
                        }
                    }
                }
            }
            FleetEvent::MemberStarted { index } => {
                if let Some(m) = self.members.get_mut(*index) {
                    m.state = MemberState::Starting;
                }
            }
            FleetEvent::Member { index, event } => {
                if let Some(m) = self.members.get_mut(*index)
                    && let Some((i, total)) = migration_progress(event)
                {
                    m.state = MemberState::Deploying { index: i, total };
                    if let crate::release::Event::Deploy(
                        crate::migrate::DeployEvent::MigrationStarted { name, .. },
                    ) = event
                    {
                        m.detail = name.clone();
                    }
                }
            }
            FleetEvent::HealthChecked { index, summary, .. } => {
                if let Some(m) = self.members.get_mut(*index) {
                    m.detail = format!("health: {summary}");
                    if m.state == MemberState::Health {
                        m.state = MemberState::Done(MemberOutcome::Applied);
                    }
                }
            }
            FleetEvent::MemberFinished {
                index,
                outcome,
                summary,
            } => {
                if let Some(m) = self.members.get_mut(*index) {
                    m.state = MemberState::Done(*outcome);
                    if *outcome != MemberOutcome::NotStarted {
                        m.detail = summary.clone();
                    }
                }
            }
            FleetEvent::Stopped { why } => self.stopped = Some(why.clone()),
            FleetEvent::Journaled(_) => {}
        }
    }

    /// How many members are in each state: running, done well, failed, left.
    pub fn tally(&self) -> (usize, usize, usize, usize) {
        let mut t = (0, 0, 0, 0);
        for m in &self.members {
            match &m.state {
                MemberState::Starting | MemberState::Deploying { .. } | MemberState::Health => {
                    t.0 += 1
                }
                MemberState::Done(MemberOutcome::Applied | MemberOutcome::UpToDate) => t.1 += 1,
                MemberState::Done(MemberOutcome::Failed | MemberOutcome::Cancelled) => t.2 += 1,
                MemberState::Waiting | MemberState::Done(MemberOutcome::NotStarted) => t.3 += 1,
            }
        }
        t
    }

    /// Draws the board; `elapsed` is given so that a snapshot is the same every time.
    pub fn draw(&self, theme: Theme, f: &mut Frame, area: Rect, elapsed: Option<&str>) {
        let [head, table, foot] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Min(3),
            Constraint::Length(2),
        ])
        .areas(area);
        let (running, ok, failed, left) = self.tally();
        let phase = match self.phase {
            None => "planning",
            Some(Phase::Canary) => "canaries",
            Some(Phase::Health) => "canary health checks",
            Some(Phase::Rest) => "the rest of the fleet",
        };
        let title = Line::from(vec![
            Span::styled(format!("Fleet {}", self.fleet), theme.bold()),
            Span::raw(format!(
                "  {} database(s), at most {} at once, stop after {} failure(s)",
                self.members.len(),
                self.concurrency,
                self.max_failures
            )),
        ]);
        let status = Line::from(vec![
            Span::raw(format!(
                "{}: {running} running, ",
                if self.finished { "finished" } else { phase }
            )),
            Span::styled(format!("{ok} done"), theme.good()),
            Span::raw(", "),
            Span::styled(
                format!("{failed} failed"),
                if failed > 0 { theme.bad() } else { theme.dim() },
            ),
            Span::raw(format!(", {left} waiting or not started")),
            Span::raw(elapsed.map(|e| format!("  ({e})")).unwrap_or_default()),
        ]);
        f.render_widget(
            Paragraph::new(vec![title, status]).block(Block::new().borders(Borders::BOTTOM)),
            head,
        );
        let visible = usize::from(table.height.saturating_sub(1));
        // Names whole, up to a point: tenants' database names run long.
        let name_width = self
            .members
            .iter()
            .map(|m| m.name.chars().count() + 1)
            .max()
            .unwrap_or(0)
            .clamp(24, 48) as u16;
        let rows: Vec<Row> = self
            .members
            .iter()
            .skip(self.scroll)
            .take(visible)
            .map(|m| {
                let style = match &m.state {
                    MemberState::Done(MemberOutcome::Failed | MemberOutcome::Cancelled) => {
                        theme.bad()
                    }
                    MemberState::Done(MemberOutcome::Applied | MemberOutcome::UpToDate) => {
                        theme.good()
                    }
                    MemberState::Done(MemberOutcome::NotStarted) | MemberState::Waiting => {
                        theme.dim()
                    }
                    _ => theme.warn(),
                };
                let role = match (m.canary, m.protected) {
                    (true, true) => "canary, protected",
                    (true, false) => "canary",
                    (false, true) => "protected",
                    (false, false) => "",
                };
                Row::new(vec![
                    Cell::from(m.name.clone()),
                    Cell::from(role),
                    Cell::from(m.state.word()).style(style),
                    Cell::from(m.detail.clone()),
                ])
            })
            .collect();
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(name_width),
                    Constraint::Length(17),
                    Constraint::Length(15),
                    Constraint::Min(10),
                ],
            )
            .header(Row::new(vec!["DATABASE", "ROLE", "STATE", "DETAIL"]).style(theme.bold())),
            table,
        );
        let more = self
            .members
            .len()
            .saturating_sub(self.scroll + visible.max(1));
        let mut foot_lines = Vec::new();
        if let Some(why) = &self.stopped {
            foot_lines.push(Line::styled(format!("stopped: {why}"), theme.bad()));
        }
        foot_lines.push(Line::styled(
            format!(
                "{}j/k scroll  {}",
                if more > 0 {
                    format!("{more} more below  ")
                } else {
                    String::new()
                },
                if self.finished {
                    "q close"
                } else {
                    "q cancel (what runs is rolled back)"
                }
            ),
            theme.dim(),
        ));
        f.render_widget(Paragraph::new(foot_lines).wrap(Wrap { trim: true }), foot);
    }

    pub fn scroll_by(&mut self, delta: isize) {
        let max = self.members.len().saturating_sub(1);
        self.scroll = self.scroll.saturating_add_signed(delta).min(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::DeployEvent;
    use crate::release::{Event, Planned};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn planned(n: usize, canaries: usize) -> FleetEvent {
        FleetEvent::Planned {
            fleet: "tenants".into(),
            members: (0..n)
                .map(|i| Planned {
                    name: format!("tenants/t{i:02}"),
                    database: format!("postgresql://app@db/t{i:02}"),
                    protected: false,
                    canary: i < canaries,
                })
                .collect(),
            concurrency: 2,
            max_failures: 1,
        }
    }

    fn started(index: usize, i: usize, total: usize) -> FleetEvent {
        FleetEvent::Member {
            index,
            event: Event::Deploy(DeployEvent::MigrationStarted {
                name: format!("2025010100000{i}_m{i}"),
                index: i,
                total,
                transactional: true,
                statements: 1,
                attempts: 1,
                backend_pid: 4242,
            }),
        }
    }

    fn render(board: &FleetBoard, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal
            .draw(|f| board.draw(Theme { color: false }, f, f.area(), Some("12 s")))
            .unwrap();
        let buffer = terminal.backend().buffer();
        let mut out = String::new();
        for y in 0..buffer.area.height {
            let line: String = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect();
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Canaries applied and healthy, two deploying, one failed, the rest left unstarted.
    fn mid_deploy() -> FleetBoard {
        let mut b = FleetBoard::new("tenants");
        let done = |index, outcome, summary: &str| FleetEvent::MemberFinished {
            index,
            outcome,
            summary: summary.into(),
        };
        for e in [
            planned(8, 1),
            FleetEvent::Phase(Phase::Canary),
            FleetEvent::MemberStarted { index: 0 },
            started(0, 1, 2),
            started(0, 2, 2),
            done(0, MemberOutcome::Applied, "2 migration(s) applied"),
            FleetEvent::Phase(Phase::Health),
            FleetEvent::HealthChecked {
                index: 0,
                verdict: Some(crate::health::Level::Ok),
                summary: "ok".into(),
            },
            FleetEvent::Phase(Phase::Rest),
            FleetEvent::MemberStarted { index: 1 },
            started(1, 2, 2),
            FleetEvent::MemberStarted { index: 2 },
            started(2, 1, 2),
            done(
                2,
                MemberOutcome::Failed,
                "migration 20250101000001_m1 failed: relation \"b\" already exists",
            ),
            FleetEvent::MemberStarted { index: 3 },
        ] {
            b.fold(&e);
        }
        b
    }

    #[test]
    fn the_board_follows_each_member_from_waiting_to_its_outcome() {
        let mut b = mid_deploy();
        let states: Vec<String> = b.members.iter().map(|m| m.state.word()).collect();
        assert_eq!(
            states[..5],
            ["applied", "migration 2/2", "FAILED", "starting", "waiting"]
        );
        assert_eq!(b.members[0].detail, "health: ok");
        assert_eq!(b.tally(), (2, 1, 1, 4));
        b.fold(&FleetEvent::Stopped {
            why: "1 database(s) failed, the limit is 1".into(),
        });
        for i in 4..8 {
            b.fold(&FleetEvent::MemberFinished {
                index: i,
                outcome: MemberOutcome::NotStarted,
                summary: "not started".into(),
            });
        }
        assert_eq!(b.members[7].state.word(), "not started");
        assert!(b.stopped.is_some());
    }

    #[test]
    fn snapshot_fleet_matrix_mid_deploy() {
        insta::assert_snapshot!("fleet_matrix", render(&mid_deploy(), 100, 16));
    }

    #[test]
    fn snapshot_fleet_matrix_stopped_after_a_failure() {
        let mut b = mid_deploy();
        b.fold(&FleetEvent::MemberFinished {
            index: 1,
            outcome: MemberOutcome::Applied,
            summary: "2 migration(s) applied".into(),
        });
        b.fold(&FleetEvent::MemberFinished {
            index: 3,
            outcome: MemberOutcome::UpToDate,
            summary: "up to date".into(),
        });
        b.fold(&FleetEvent::Stopped {
            why: "1 database(s) failed, the limit is 1: no other database was started".into(),
        });
        for i in 4..8 {
            b.fold(&FleetEvent::MemberFinished {
                index: i,
                outcome: MemberOutcome::NotStarted,
                summary: "not started".into(),
            });
        }
        b.finished = true;
        insta::assert_snapshot!("fleet_matrix_stopped", render(&b, 100, 16));
    }
}
