//! The release report: a session's journal as Markdown, for the changelog and post-mortems.

use chrono::{DateTime, Utc};

use super::{Entry, Event, Outcome};

/// Renders a session as Markdown: who, where, when; the steps in order with their outcomes and
/// durations; every confirmation and override with its reason.
pub fn markdown(entries: &[Entry]) -> String {
    let mut out = String::from("# Release report\n\n");
    let start = entries.first();
    let end = entries.last();
    if let Some(Entry {
        at,
        operator,
        event:
            Event::SessionStarted {
                environment,
                database,
                pgdeck,
                command,
            },
    }) = start
    {
        out.push_str(&format!(
            "- Environment: **{environment}**\n- Database: `{database}`\n- Operator: {operator}\n- Started: {}\n",
            time(*at)
        ));
        if let Some(command) = command {
            out.push_str(&format!("- Headless command: pgdeck {command}\n"));
        }
        if let Some(e) = end {
            let finished = entries
                .iter()
                .any(|e| matches!(e.event, Event::SessionFinished));
            out.push_str(&format!(
                "- {}: {} ({} after the start)\n",
                if finished { "Finished" } else { "Last entry" },
                time(e.at),
                humantime::format_duration(std::time::Duration::from_secs(
                    (e.at - *at).num_seconds().max(0) as u64
                ))
            ));
        }
        out.push_str(&format!("- pgdeck {pgdeck}\n"));
    }
    let operators: std::collections::BTreeSet<&str> =
        entries.iter().map(|e| e.operator.as_str()).collect();
    if operators.len() > 1 {
        out.push_str(&format!(
            "- Operators: {}\n",
            operators.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }

    out.push_str(
        "\n## Steps\n\n| time | step | outcome | took | detail |\n|---|---|---|---|---|\n",
    );
    let mut failures = Vec::new();
    for e in entries {
        match &e.event {
            Event::StepFinished {
                title,
                outcome,
                summary,
                duration_ms,
                ..
            } => {
                let outcome_text = match outcome {
                    Outcome::Ok => "done",
                    Outcome::Failed => "**FAILED**",
                    Outcome::Cancelled => "cancelled",
                };
                if *outcome == Outcome::Failed {
                    failures.push(format!("{title}: {summary}"));
                }
                out.push_str(&format!(
                    "| {} | {} | {outcome_text} | {} | {} |\n",
                    clock(e.at),
                    cell(title),
                    took(*duration_ms),
                    cell(summary)
                ));
            }
            Event::HookRan {
                name,
                exit_code,
                timed_out,
                duration_ms,
                ..
            } => out.push_str(&format!(
                "| {} | hook {name} | {} | {} | |\n",
                clock(e.at),
                match super::hook_ending(*exit_code, *timed_out) {
                    d if *exit_code == Some(0) => d,
                    d => format!("**{d}**"),
                },
                took(*duration_ms)
            )),
            Event::Released {
                workflow,
                outcome,
                summary,
                not_applied,
                duration_ms,
                ..
            } => {
                let outcome_text = match outcome {
                    Outcome::Ok => "done",
                    Outcome::Failed => "**FAILED**",
                    Outcome::Cancelled => "**cancelled**",
                };
                let mut detail = summary.clone();
                if !not_applied.is_empty() {
                    detail.push_str(&format!("; not applied: {}", not_applied.join(", ")));
                }
                if *outcome != Outcome::Ok {
                    failures.push(format!("{workflow}: {detail}"));
                }
                out.push_str(&format!(
                    "| {} | {} | {outcome_text} |{}| {} |\n",
                    clock(e.at),
                    cell(workflow),
                    // Journals written before durations were recorded have none.
                    duration_ms.map_or(" ".into(), |d| format!(" {} ", took(d))),
                    cell(&detail)
                ));
            }
            Event::FleetReleased {
                fleet,
                outcome,
                summary,
                duration_ms,
                ..
            } => {
                if *outcome != Outcome::Ok {
                    failures.push(format!("fleet deploy {fleet}: {summary}"));
                }
                out.push_str(&format!(
                    "| {} | fleet deploy {} | {} |{}| {} |\n",
                    clock(e.at),
                    cell(fleet),
                    match outcome {
                        Outcome::Ok => "done",
                        Outcome::Failed => "**FAILED**",
                        Outcome::Cancelled => "**cancelled**",
                    },
                    duration_ms.map_or(" ".into(), |d| format!(" {} ", took(d))),
                    cell(summary)
                ));
            }
            Event::ReplicaWaited {
                before,
                replica,
                waited_ms,
            } => out.push_str(&format!(
                "| {} | {} | waited for replica {} | {} | replay lag above max_replica_lag |\n",
                clock(e.at),
                cell(before),
                cell(replica),
                took(*waited_ms)
            )),
            Event::MigrationStopped {
                migration,
                attempt,
                attempts,
                victims,
                longest_wait_ms,
                ..
            } => out.push_str(&format!(
                "| {} | {} | stopped by the watchdog (attempt {attempt} of {attempts}) | | {victims} session(s) queued behind it, the longest {:.1}s |\n",
                clock(e.at),
                cell(migration),
                *longest_wait_ms as f64 / 1000.0
            )),
            event if event.skipped().is_some() => {
                if let Some(skip) = event.skipped() {
                    out.push_str(&format!(
                        "| {} | {} | skipped by {} | | {} |\n",
                        clock(e.at),
                        cell(skip.title),
                        e.operator,
                        cell(skip.note)
                    ));
                }
            }
            Event::StepTicked { title, note, .. } => out.push_str(&format!(
                "| {} | {} | ticked by {} | | {} |\n",
                clock(e.at),
                cell(title),
                e.operator,
                cell(note.as_deref().unwrap_or(""))
            )),
            _ => {}
        }
    }

    for e in entries {
        if let Event::FleetReleased { fleet, members, .. } = &e.event {
            out.push_str(&format!(
                "\n## Fleet {} ({} database(s), {})\n\n| database | canary | outcome | detail |\n|---|---|---|---|\n",
                cell(fleet),
                members.len(),
                clock(e.at)
            ));
            for m in members {
                out.push_str(&format!(
                    "| {} (`{}`) | {} | {} | {} |\n",
                    cell(&m.name),
                    cell(&m.database),
                    if m.canary { "yes" } else { "" },
                    if m.outcome == "applied" || m.outcome == "up to date" {
                        m.outcome.clone()
                    } else {
                        format!("**{}**", m.outcome)
                    },
                    cell(&m.summary)
                ));
            }
        }
    }

    let guards: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Confirmed { what } => Some(format!(
                "- {} {} confirmed: {what}",
                clock(e.at),
                e.operator
            )),
            Event::Override { what, reason } => Some(format!(
                "- {} **override** by {}: {what}. Reason: {reason}",
                clock(e.at),
                e.operator
            )),
            _ => None,
        })
        .collect();
    if !guards.is_empty() {
        out.push_str("\n## Confirmations and overrides\n\n");
        out.push_str(&guards.join("\n"));
        out.push('\n');
    }
    if !failures.is_empty() {
        out.push_str("\n## Failures\n\n");
        for f in failures {
            out.push_str(&format!("- {f}\n"));
        }
    }
    out
}

/// A duration for the "took" column.
fn took(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S").to_string()
}

/// Text fit for one table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_session_renders_steps_overrides_and_failures() {
        let t = |s: i64| Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap();
        let e = |s, event| Entry {
            at: t(s),
            operator: "ana".into(),
            event,
        };
        let entries = vec![
            e(
                0,
                Event::SessionStarted {
                    environment: "production".into(),
                    database: "postgresql://app@db/app".into(),
                    pgdeck: "0.1.0".into(),
                    command: None,
                },
            ),
            e(
                30,
                Event::StepFinished {
                    step: "backup".into(),
                    title: "Backup created".into(),
                    outcome: Outcome::Ok,
                    summary: "app_production_20260101.dump, 1.2 GB".into(),
                    duration_ms: 28_000,
                },
            ),
            e(
                40,
                Event::Override {
                    what: "deploy with DANGEROUS finding renaming-column".into(),
                    reason: "CHG-1 | clients updated".into(),
                },
            ),
            e(
                60,
                Event::StepFinished {
                    step: "deploy".into(),
                    title: "Deploy migrations".into(),
                    outcome: Outcome::Failed,
                    summary: "20260101_x failed: lock timeout".into(),
                    duration_ms: 15_000,
                },
            ),
        ];
        let mut entries = entries;
        entries.push(e(
            90,
            Event::Released {
                workflow: "deploy".into(),
                outcome: Outcome::Cancelled,
                summary: "deploy cancelled during 20260102_y".into(),
                applied: vec!["20260101_x".into()],
                not_applied: vec!["20260102_y".into()],
                duration_ms: None,
            },
        ));
        let md = markdown(&entries);
        assert!(
            md.contains("| deploy | **cancelled** | | deploy cancelled during 20260102_y; not applied: 20260102_y |"),
            "{md}"
        );
        assert!(md.contains("- Environment: **production**"), "{md}");
        assert!(
            md.contains("| Backup created | done | 28s | app_production_20260101.dump, 1.2 GB |"),
            "{md}"
        );
        assert!(md.contains("**override** by ana: deploy with DANGEROUS finding renaming-column. Reason: CHG-1 | clients updated"), "{md}");
        assert!(md.contains("| Deploy migrations | **FAILED** |"), "{md}");
        assert!(
            md.contains("## Failures\n\n- Deploy migrations: 20260101_x failed: lock timeout"),
            "{md}"
        );
        assert!(md.contains("- Last entry: "), "{md}");
    }

    #[test]
    fn a_skipped_step_reads_as_skipped_in_either_form_and_a_release_says_how_long_it_took() {
        let t = |s: i64| Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap();
        let e = |s, event| Entry {
            at: t(s),
            operator: "ana".into(),
            event,
        };
        let entries = vec![
            e(
                10,
                Event::StepSkipped {
                    step: "team_notified".into(),
                    title: "Team notified".into(),
                    note: "nobody on call tonight".into(),
                },
            ),
            // As journals written before StepSkipped have it.
            e(
                20,
                Event::StepTicked {
                    step: "integration_tests".into(),
                    title: "Integration tests passed (skipped)".into(),
                    note: Some("no suite for this service".into()),
                },
            ),
            e(
                30,
                Event::StepTicked {
                    step: "changelog".into(),
                    title: "Changelog written".into(),
                    note: None,
                },
            ),
            e(
                40,
                Event::Released {
                    workflow: "restore".into(),
                    outcome: Outcome::Ok,
                    summary: "app.dump restored".into(),
                    applied: vec![],
                    not_applied: vec![],
                    duration_ms: Some(83_000),
                },
            ),
        ];
        let md = markdown(&entries);
        assert!(
            md.contains("| Team notified | skipped by ana | | nobody on call tonight |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| Integration tests passed | skipped by ana | | no suite for this service |"
            ),
            "{md}"
        );
        assert!(!md.contains("(skipped)"), "{md}");
        assert!(
            md.contains("| Changelog written | ticked by ana | |  |"),
            "{md}"
        );
        assert!(
            md.contains("| restore | done | 1m 23s | app.dump restored |"),
            "{md}"
        );
    }
}
