//! The frame: header, the screen on show, footer, and the overlays (help, a modal). Drawing is
//! a pure function of the state: nothing here changes it or does I/O.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::widgets::{Paragraph, Wrap};

use super::app::App;
use super::screens::{self, Screen};
pub use super::theme::Theme;
use super::widgets;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

pub fn draw(app: &App, theme: Theme, f: &mut Frame) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small: {}x{}, pgdeck needs at least {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    widgets::draw_header(app, theme, f, header);
    match app.screen {
        Screen::Checklist => screens::checklist::draw(app, theme, f, body),
        Screen::Monitor => screens::monitor::draw(app, theme, f, body),
        Screen::Migrations => screens::migrations::draw(app, theme, f, body),
        Screen::Rollback => screens::rollback::draw(app, theme, f, body),
        Screen::Journal => screens::journal::draw(app, theme, f, body),
        Screen::Logs => screens::logs::draw(app, theme, f, body),
    }
    if let Some(pv) = &app.plan_view {
        widgets::draw_plan(pv, theme, f, body);
    }
    widgets::draw_footer(app, theme, f, footer);
    if app.help {
        widgets::draw_help(app, f, area);
    }
    if let Some(m) = &app.modal {
        m.draw(theme, f, area);
    }
}
