//! The console's costs: the time to draw one frame of the Monitor screen with 1,000 rows in the
//! long-running pane (target at most 2 ms), and the real console's idle CPU at a 1 s refresh
//! (target at most 1 % of a core; at most 2 % with health sampled in the background) and
//! memory (target at most 40 MB RSS), measured from /proc while it runs in a pseudo-terminal
//! against a sandbox. Run with `cargo bench --bench console`.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use pgdeck::checklist::{self, Checklist, Facts};
use pgdeck::db::sandbox::Sandbox;
use pgdeck::monitor::watch::Update;
use pgdeck::monitor::{Connections, LongQuery, Pane, Sample, Snapshot};
use pgdeck::release::Environment;
use pgdeck::target::DbTarget;
use pgdeck::tui::app::{App, Msg};
use pgdeck::tui::view::{self, Theme};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

mod common;

use common::{TICKS_PER_SEC, cpu_ticks};

const FRAMES: usize = 500;
const IDLE_SECONDS: u64 = 30;

fn main() {
    render_bench();
    idle_bench();
}

fn render_bench() {
    let env = Environment {
        protected: true,
        ..Environment::new(
            "production",
            DbTarget::socket(Path::new("/run/pg"), 5432, "deploy", "app"),
        )
    };
    let list = Checklist::new(checklist::default_items(), Facts::default());
    let mut app = App::new(env, list, None);
    let now = Utc::now();
    let rows: Vec<LongQuery> = (0..1000)
        .map(|i| LongQuery {
            pid: 10_000 + i,
            backend_start: now,
            user: format!("user{}", i % 17),
            application: "web".into(),
            client: "10.0.0.1".into(),
            wait_event: (i % 3 == 0).then(|| "Lock:relation".to_owned()),
            state: "active".into(),
            query_seconds: 5.0 + f64::from(i),
            transaction_seconds: 5.0 + f64::from(i),
            query_line: format!(
                "SELECT o.id, o.total FROM orders o JOIN users u ON u.id = o.user_id WHERE o.id = {i}"
            ),
            query: String::new(),
        })
        .collect();
    let snapshot = Snapshot {
        at: now,
        server_version: "15.18".into(),
        sees_all_sessions: true,
        connections: sample(
            now,
            Connections {
                total: 1000,
                usable_max: 1997,
                utilisation: 0.5,
                by_state: [("active".to_owned(), 1000)].into_iter().collect(),
                waiting_on_locks: 0,
                by_database: vec![],
                by_user: vec![],
                by_application: vec![],
            },
        ),
        long_running: sample(now, rows),
        blocking: Pane::Unavailable {
            reason: "n/a".into(),
        },
        tables: Pane::Unavailable {
            reason: "n/a".into(),
        },
        progress: Pane::Unavailable {
            reason: "n/a".into(),
        },
        replication: Pane::Unavailable {
            reason: "n/a".into(),
        },
        pools: None,
        alerts: Vec::new(),
        host: None,
    };
    app.update(Msg::Monitor(Box::new(Update::Fresh {
        snapshot: Box::new(snapshot),
    })));
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('2'),
        KeyModifiers::NONE,
    )));
    for _ in 0..500 {
        app.update(Msg::Key(KeyEvent::new(
            KeyCode::Char('j'),
            KeyModifiers::NONE,
        )));
    }
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).expect("terminal");
    let theme = Theme { color: true };
    for _ in 0..20 {
        terminal.draw(|f| view::draw(&app, theme, f)).expect("draw");
    }
    let mut times = Vec::with_capacity(FRAMES);
    for _ in 0..FRAMES {
        let t = Instant::now();
        terminal.draw(|f| view::draw(&app, theme, f)).expect("draw");
        times.push(t.elapsed());
    }
    times.sort();
    let median = times[FRAMES / 2].as_secs_f64() * 1000.0;
    let p99 = times[FRAMES * 99 / 100].as_secs_f64() * 1000.0;
    println!(
        "frame, Monitor screen 200x60 with 1,000 long-running rows: median {median:.3} ms, p99 {p99:.3} ms (target at most 2 ms): {}",
        if median <= 2.0 { "met" } else { "MISSED" }
    );
}

fn idle_bench() {
    let sandbox = Sandbox::start_temporary().unwrap_or_else(|e| panic!("{}: {}", e.cause, e.hint));
    let journal = tempfile::tempdir().expect("tempdir");
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("pty");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_pgdeck"));
    cmd.args(["--database-url", &sandbox.url("postgres")]);
    cmd.env("PGDECK_JOURNAL_DIR", journal.path());
    cmd.env("TERM", "xterm-256color");
    cmd.cwd(journal.path());
    let mut child = pair.slave.spawn_command(cmd).expect("spawn the console");
    let pid = child.process_id().expect("pid");
    let mut reader = pair.master.try_clone_reader().expect("reader");
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut writer = pair.master.take_writer().expect("writer");
    std::thread::sleep(Duration::from_secs(3));
    // The Monitor screen, refreshing every second ('+' halves the default 2 s).
    std::io::Write::write_all(&mut writer, b"2+").expect("keys");
    std::thread::sleep(Duration::from_secs(3));
    let cpu = idle_cpu(pid);
    println!(
        "console idle on the Monitor screen at a 1 s refresh for {IDLE_SECONDS}s: {cpu:.2} % of a core (target at most 1 %): {}",
        if cpu <= 1.0 { "met" } else { "MISSED" }
    );
    let rss = rss_kb(pid);
    println!(
        "console memory: {:.1} MB RSS (target at most 40 MB): {}",
        rss as f64 / 1024.0,
        if rss <= 40 * 1024 { "met" } else { "MISSED" }
    );
    // Health sampled in the background, as from the Deploy step on ('H').
    std::io::Write::write_all(&mut writer, b"H").expect("keys");
    std::thread::sleep(Duration::from_secs(3));
    let cpu = idle_cpu(pid);
    println!(
        "console idle with background health sampling for {IDLE_SECONDS}s: {cpu:.2} % of a core (target at most 2 %): {}",
        if cpu <= 2.0 { "met" } else { "MISSED" }
    );
    std::io::Write::write_all(&mut writer, b"q").expect("quit");
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
}

/// The share of a core `pid` used over IDLE_SECONDS.
fn idle_cpu(pid: u32) -> f64 {
    let (cpu0, t0) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(IDLE_SECONDS));
    let (cpu1, elapsed) = (cpu_ticks(pid), t0.elapsed());
    (cpu1 - cpu0) as f64 / TICKS_PER_SEC as f64 / elapsed.as_secs_f64() * 100.0
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn sample<T>(at: chrono::DateTime<Utc>, data: T) -> Pane<T> {
    Pane::Ok(Sample {
        at,
        cost_ms: 1.0,
        data,
    })
}
