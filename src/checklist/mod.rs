//! The production checklist as data, and its state machine: the runbook's items in order, which
//! run a core operation and which the operator ticks, and the gates that keep a step locked with
//! the reason shown. No I/O: the console runs the operations and feeds their results back here.

use serde::{Deserialize, Serialize};

/// When in the release an item belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Pre,
    During,
    Post,
}

impl Phase {
    pub fn title(self) -> &'static str {
        match self {
            Phase::Pre => "Pre-migration",
            Phase::During => "During migration",
            Phase::Post => "Post-migration",
        }
    }
}

/// The core operation an automated item runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// The pending migrations rehearsed on a copy of the schema, and the drift check.
    Rehearse,
    /// The environment the release is rehearsed on has every pending migration applied.
    CheckRehearsed,
    Backup,
    VerifyBackup,
    /// PITR mode: the stanza's newest base backup is of this cluster and young enough.
    BaseBackupRecent,
    /// PITR mode: WAL archiving works now.
    ArchivingHealthy,
    /// PITR mode: a named restore point, journaled, its WAL archived.
    RestorePoint,
    Plan,
    RollbackPlan,
    CaptureBaseline,
    Deploy,
    Status,
    Health,
    SampleQueries,
    BackupRetained,
    WriteReport,
    /// Runs the environment's hook of the same name.
    Hook(HookStep),
}

/// Manual items that become automated when the environment configures their hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookStep {
    IntegrationTests,
    MaintenanceOn,
    MaintenanceOff,
    SmokeTest,
}

impl HookStep {
    pub fn hook_name(self) -> &'static str {
        match self {
            HookStep::IntegrationTests => "integration_tests",
            HookStep::MaintenanceOn => "maintenance_on",
            HookStep::MaintenanceOff => "maintenance_off",
            HookStep::SmokeTest => "smoke_test",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub phase: Phase,
    pub title: String,
    /// `None`: the operator ticks it.
    pub operation: Option<Operation>,
    /// Optional items may be skipped with a note.
    pub optional: bool,
}

/// Where an item stands.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Not yet: an earlier item is open, or a gate holds; the reason is shown.
    Locked(String),
    Ready,
    Running {
        detail: String,
        fraction: Option<f64>,
    },
    Done {
        summary: String,
    },
    Ticked {
        note: Option<String>,
    },
    Skipped {
        note: String,
    },
    Failed {
        cause: String,
    },
}

impl State {
    pub fn is_complete(&self) -> bool {
        matches!(
            self,
            State::Done { .. } | State::Ticked { .. } | State::Skipped { .. }
        )
    }
}

/// What the gates need to know about the world.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub protected: bool,
    /// A verified backup young enough for deploy: its file name; else why not. In PITR mode:
    /// the base backup and archiving that satisfy the gate; else why not.
    pub verified_backup: Result<String, String>,
    /// PITR mode: the backups are a pgBackRest stanza's.
    pub pitr: bool,
    /// DANGEROUS findings in the pending migrations nobody acknowledged yet.
    pub unacknowledged: Vec<String>,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            protected: false,
            verified_backup: Err("no backup checked yet".into()),
            pitr: false,
            unacknowledged: Vec::new(),
        }
    }
}

/// The runbook's production checklist.
pub fn default_items() -> Vec<Item> {
    use Operation as O;
    use Phase::*;
    let item = |id: &str, phase, title: &str, operation, optional| Item {
        id: id.into(),
        phase,
        title: title.into(),
        operation,
        optional,
    };
    vec![
        // Optional: a host without PostgreSQL's server programs cannot rehearse, and skipping
        // it takes a note, journaled.
        item(
            "rehearsal",
            Pre,
            "Rehearsal and drift check",
            Some(O::Rehearse),
            true,
        ),
        item("backup", Pre, "Backup created", Some(O::Backup), false),
        item(
            "verify_backup",
            Pre,
            "Backup verified",
            Some(O::VerifyBackup),
            false,
        ),
        item("plan", Pre, "Lint and plan reviewed", Some(O::Plan), false),
        item("staging", Pre, "Migration tested on staging", None, false),
        item(
            "integration_tests",
            Pre,
            "Integration tests passing",
            None,
            false,
        ),
        item(
            "rollback_plan",
            Pre,
            "Rollback plan documented (down.sql)",
            Some(O::RollbackPlan),
            false,
        ),
        item("team_notified", Pre, "Team notified", None, false),
        item(
            "baseline",
            Pre,
            "Monitoring ready: baseline captured",
            Some(O::CaptureBaseline),
            false,
        ),
        item("off_hours", Pre, "Off-hours window", None, true),
        item(
            "maintenance_on",
            During,
            "Maintenance mode on (if needed)",
            None,
            true,
        ),
        item(
            "deploy",
            During,
            "Deploy migrations",
            Some(O::Deploy),
            false,
        ),
        item(
            "status",
            During,
            "Migration status verified",
            Some(O::Status),
            false,
        ),
        item(
            "health",
            During,
            "Health checks passing",
            Some(O::Health),
            false,
        ),
        item("error_rates", During, "Error rates normal", None, false),
        item(
            "sample_queries",
            During,
            "Sample queries tested",
            Some(O::SampleQueries),
            false,
        ),
        item("maintenance_off", Post, "Maintenance mode off", None, true),
        item("smoke_test", Post, "Full smoke test", None, false),
        item(
            "performance",
            Post,
            "Performance reviewed against baseline",
            Some(O::Health),
            false,
        ),
        item(
            "backup_retained",
            Post,
            "Backup retained",
            Some(O::BackupRetained),
            false,
        ),
        item(
            "report",
            Post,
            "Release report written",
            Some(O::WriteReport),
            false,
        ),
    ]
}

/// How an environment changes the built-in checklist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChecklistSettings {
    /// Ids of built-in items this environment does without.
    pub remove: Vec<String>,
    /// Manual items of the team's own.
    pub extra: Vec<ExtraItem>,
    /// The environment the release is rehearsed on first (production's "staging"): the
    /// staging item then checks its ledger instead of waiting for a tick.
    pub rehearsed_on: Option<String>,
    /// PITR mode (a pgBackRest stanza): the backup and verify items become "base backup
    /// recent", "archiving healthy" and "restore point created".
    pub pitr: bool,
}

/// The built-in items of an environment whose backups are a pgBackRest stanza: instead of a
/// dump and its verification, a recent base backup, archiving that works, and a restore point
/// at the start of the release; at the end, the base backup and WAL the point needs, still kept.
fn pitr_items(mut items: Vec<Item>) -> Vec<Item> {
    let at = items
        .iter()
        .position(|i| i.id == "backup")
        .unwrap_or(items.len());
    items.retain(|i| i.id != "backup" && i.id != "verify_backup");
    let pitr = [
        (
            "base_backup",
            "Base backup recent",
            Operation::BaseBackupRecent,
        ),
        (
            "archiving",
            "Archiving healthy",
            Operation::ArchivingHealthy,
        ),
        (
            "restore_point",
            "Restore point created",
            Operation::RestorePoint,
        ),
    ];
    for (n, (id, title, operation)) in pitr.into_iter().enumerate() {
        items.insert(
            at + n,
            Item {
                id: id.into(),
                phase: Phase::Pre,
                title: title.into(),
                operation: Some(operation),
                optional: false,
            },
        );
    }
    if let Some(kept) = items.iter_mut().find(|i| i.id == "backup_retained") {
        kept.title = "Base backup and WAL retained".into();
    }
    items
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraItem {
    pub title: String,
    pub phase: Phase,
    /// The id of the item it follows; by default it ends its phase.
    pub after: Option<String>,
    #[serde(default)]
    pub optional: bool,
}

/// The built-in checklist changed by `settings`; an unknown id is an error naming the known ones.
/// Deploy cannot be removed: the checklist exists for it. Items whose hook is among `hooks` (the
/// configured hook names) run it instead of waiting for a tick.
pub fn items(settings: &ChecklistSettings, hooks: &[&str]) -> Result<Vec<Item>, String> {
    let built_in = || {
        if settings.pitr {
            pitr_items(default_items())
        } else {
            default_items()
        }
    };
    let mut items = built_in();
    for item in &mut items {
        let step = match item.id.as_str() {
            "integration_tests" => HookStep::IntegrationTests,
            "maintenance_on" => HookStep::MaintenanceOn,
            "maintenance_off" => HookStep::MaintenanceOff,
            "smoke_test" => HookStep::SmokeTest,
            _ => continue,
        };
        if hooks.contains(&step.hook_name()) {
            item.operation = Some(Operation::Hook(step));
        }
    }
    if let Some(on) = &settings.rehearsed_on
        && let Some(item) = items.iter_mut().find(|i| i.id == "staging")
    {
        item.title = format!("Migration tested on {on}");
        item.operation = Some(Operation::CheckRehearsed);
    }
    let known = || items_ids(&built_in());
    for id in &settings.remove {
        if id == "deploy" {
            return Err("the deploy step cannot be removed".into());
        }
        let Some(i) = items.iter().position(|it| it.id == *id) else {
            return Err(format!("no checklist item '{id}' (items: {})", known()));
        };
        items.remove(i);
    }
    for (n, extra) in settings.extra.iter().enumerate() {
        let item = Item {
            id: format!("extra_{}", n + 1),
            phase: extra.phase,
            title: extra.title.clone(),
            operation: None,
            optional: extra.optional,
        };
        let at = match &extra.after {
            Some(after) => {
                let i = items.iter().position(|it| it.id == *after).ok_or_else(|| {
                    format!("no checklist item '{after}' to follow (items: {})", known())
                })?;
                if items[i].phase != extra.phase {
                    return Err(format!(
                        "'{}' is in phase {:?} but follows '{after}' of phase {:?}",
                        extra.title, extra.phase, items[i].phase
                    ));
                }
                i + 1
            }
            None => items
                .iter()
                .rposition(|it| it.phase == extra.phase)
                .map_or(items.len(), |i| i + 1),
        };
        items.insert(at, item);
    }
    Ok(items)
}

fn items_ids(items: &[Item]) -> String {
    items
        .iter()
        .map(|i| i.id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checklist and each item's state.
#[derive(Debug, Clone)]
pub struct Checklist {
    pub items: Vec<Item>,
    states: Vec<State>,
    pub facts: Facts,
}

impl Checklist {
    pub fn new(items: Vec<Item>, facts: Facts) -> Checklist {
        let mut c = Checklist {
            states: vec![State::Ready; items.len()],
            items,
            facts,
        };
        c.relock();
        c
    }

    pub fn state(&self, i: usize) -> &State {
        &self.states[i]
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.items.iter().position(|i| i.id == id)
    }

    /// How many items are complete, of all.
    pub fn progress(&self) -> (usize, usize) {
        (
            self.states.iter().filter(|s| s.is_complete()).count(),
            self.items.len(),
        )
    }

    /// Whether some item is running (quitting then asks first).
    pub fn running(&self) -> Option<usize> {
        self.states
            .iter()
            .position(|s| matches!(s, State::Running { .. }))
    }

    pub fn set_facts(&mut self, facts: Facts) {
        self.facts = facts;
        self.relock();
    }

    /// The earlier item that must be completed before item `i`, if one is open.
    pub fn order_gate(&self, i: usize) -> Option<String> {
        (0..i)
            .find(|&j| !self.states[j].is_complete())
            .map(|open| format!("first: {}", self.items[open].title))
    }

    /// Why item `i` cannot be started now, if it cannot: an open earlier item, or (for a
    /// protected deploy) what the facts say its guards will refuse. The guards themselves are
    /// evaluated by the deploy when it starts; this is what the screen shows before.
    pub fn gate(&self, i: usize) -> Option<String> {
        if let Some(why) = self.order_gate(i) {
            return Some(why);
        }
        if self.items[i].operation == Some(Operation::Deploy) && self.facts.protected {
            let mut why = Vec::new();
            match &self.facts.verified_backup {
                Err(e) if self.facts.pitr => why.push(format!(
                    "needs a recent base backup and healthy archiving: {e}"
                )),
                Err(e) => why.push(format!("needs a recent verified backup: {e}")),
                Ok(_) => {}
            }
            if !self.facts.unacknowledged.is_empty() {
                why.push(format!(
                    "DANGEROUS findings not acknowledged: {}",
                    self.facts.unacknowledged.join(", ")
                ));
            }
            if !why.is_empty() {
                return Some(why.join("; "));
            }
        }
        None
    }

    /// Recomputes Locked / Ready for items that have not started.
    fn relock(&mut self) {
        for i in 0..self.items.len() {
            if matches!(self.states[i], State::Locked(_) | State::Ready) {
                self.states[i] = match self.gate(i) {
                    Some(why) => State::Locked(why),
                    None => State::Ready,
                };
            }
        }
    }

    /// Marks item `i` running; refused while an earlier item is open. A step locked by what the
    /// facts say of its guards may start: its workflow then says what it refuses and why.
    pub fn start(&mut self, i: usize) -> Result<(), String> {
        if let Some(why) = self.order_gate(i) {
            return Err(why);
        }
        match &self.states[i] {
            State::Running { .. } => Err("already running".into()),
            // An automated step runs again when asked (a backup taken anew, a deploy of what is
            // pending again after a restore); a tick stays a tick.
            State::Done { .. } if self.items[i].operation.is_some() => {
                self.states[i] = State::Running {
                    detail: "starting again".into(),
                    fraction: None,
                };
                Ok(())
            }
            s if s.is_complete() => Err("already done".into()),
            _ => {
                self.states[i] = State::Running {
                    detail: "starting".into(),
                    fraction: None,
                };
                Ok(())
            }
        }
    }

    /// A step that was started but did not run (it waits for a confirmation) is ready again.
    pub fn abandon(&mut self, i: usize) {
        if matches!(self.states[i], State::Running { .. }) {
            self.states[i] = State::Ready;
            self.relock();
        }
    }

    pub fn progress_of(&mut self, i: usize, detail: String, fraction: Option<f64>) {
        if matches!(self.states[i], State::Running { .. }) {
            self.states[i] = State::Running { detail, fraction };
        }
    }

    pub fn finish(&mut self, i: usize, result: Result<String, String>) {
        self.states[i] = match result {
            Ok(summary) => State::Done { summary },
            Err(cause) => State::Failed { cause },
        };
        self.relock();
    }

    /// The operator ticks a manual item (or confirms an automated one by hand is not allowed).
    pub fn tick(&mut self, i: usize, note: Option<String>) -> Result<(), String> {
        // A missing down.sql may be made up for by a rollback plan written elsewhere.
        let by_hand = self.items[i].operation == Some(Operation::RollbackPlan)
            && matches!(self.states[i], State::Failed { .. });
        if self.items[i].operation.is_some() && !by_hand {
            return Err("this step runs itself: press Enter".into());
        }
        if let State::Locked(why) = &self.states[i] {
            return Err(why.clone());
        }
        self.states[i] = State::Ticked { note };
        self.relock();
        Ok(())
    }

    /// Skips an optional item with a note.
    pub fn skip(&mut self, i: usize, note: String) -> Result<(), String> {
        if !self.items[i].optional {
            return Err("only optional steps can be skipped".into());
        }
        if let State::Locked(why) = &self.states[i] {
            return Err(why.clone());
        }
        self.states[i] = State::Skipped { note };
        self.relock();
        Ok(())
    }

    /// Restores a state from the journal of a resumed session.
    /// Opens item `i` and every later one again: what they checked no longer holds (a restore
    /// undid the deploy, the deploy failed, the migrations changed since the plan was read).
    /// A running item is left to end. How many were open again.
    pub fn reopen_from(&mut self, i: usize) -> usize {
        let mut opened = 0;
        for j in i..self.items.len() {
            if self.states[j].is_complete() || matches!(self.states[j], State::Failed { .. }) {
                self.states[j] = State::Ready;
                opened += 1;
            }
        }
        self.relock();
        opened
    }

    pub fn restore(&mut self, id: &str, state: State) {
        if let Some(i) = self.index_of(id) {
            self.states[i] = state;
            self.relock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopening_from_an_item_opens_it_and_everything_after_it() {
        let mut c = list(false);
        let deploy = c.index_of("deploy").unwrap();
        for i in 0..c.items.len() {
            c.states[i] = State::Done {
                summary: "done".into(),
            };
        }
        assert_eq!(c.reopen_from(deploy), c.items.len() - deploy);
        assert!(c.states[deploy - 1].is_complete());
        assert_eq!(c.states[deploy], State::Ready);
        assert!(matches!(c.states[deploy + 1], State::Locked(_)));
    }

    fn list(protected: bool) -> Checklist {
        Checklist::new(
            default_items(),
            Facts {
                protected,
                ..Facts::default()
            },
        )
    }

    #[test]
    fn items_unlock_in_order_and_say_what_comes_first() {
        let mut c = list(false);
        assert_eq!(c.state(0), &State::Ready);
        assert_eq!(
            c.state(1),
            &State::Locked("first: Rehearsal and drift check".into())
        );
        assert_eq!(c.start(1), Err("first: Rehearsal and drift check".into()));
        c.start(0).unwrap();
        assert_eq!(c.running(), Some(0));
        c.finish(0, Ok("1 pending rehearsed on a copy; no drift".into()));
        assert_eq!(c.state(1), &State::Ready);
        assert_eq!(c.progress(), (1, 21));
    }

    #[test]
    fn manual_items_are_ticked_optional_ones_skipped_automated_ones_run() {
        let mut c = list(false);
        for i in 0..4 {
            c.start(i).unwrap();
            c.finish(i, Ok(String::new()));
        }
        let staging = c.index_of("staging").unwrap();
        assert!(c.tick(0, None).is_err(), "an automated step is not ticked");
        c.tick(staging, Some("CI run 4411".into())).unwrap();
        assert_eq!(
            c.state(staging),
            &State::Ticked {
                note: Some("CI run 4411".into())
            }
        );
        assert!(c.skip(staging + 1, "n/a".into()).is_err());
    }

    #[test]
    fn a_protected_deploy_waits_for_a_verified_backup_and_acknowledgements() {
        let mut c = list(true);
        let deploy = c.index_of("deploy").unwrap();
        for i in 0..deploy {
            if c.items[i].operation.is_some() {
                c.start(i).unwrap();
                c.finish(i, Ok(String::new()));
            } else if c.items[i].optional {
                c.skip(i, "not needed".into()).unwrap();
            } else {
                c.tick(i, None).unwrap();
            }
        }
        match c.state(deploy) {
            State::Locked(why) => assert!(why.contains("recent verified backup"), "{why}"),
            s => panic!("{s:?}"),
        }
        c.set_facts(Facts {
            protected: true,
            verified_backup: Ok("app.dump".into()),
            pitr: false,
            unacknowledged: vec!["renaming-column".into()],
        });
        assert_eq!(
            c.state(deploy),
            &State::Locked("DANGEROUS findings not acknowledged: renaming-column".into())
        );
        c.set_facts(Facts {
            protected: true,
            verified_backup: Ok("app.dump".into()),
            pitr: false,
            unacknowledged: vec![],
        });
        assert_eq!(c.state(deploy), &State::Ready);
    }

    #[test]
    fn an_environment_removes_items_and_adds_its_own() {
        let settings = ChecklistSettings {
            remove: vec!["off_hours".into()],
            extra: vec![
                ExtraItem {
                    title: "Feature flag checkout_v2 off".into(),
                    phase: Phase::Pre,
                    after: Some("team_notified".into()),
                    optional: false,
                },
                ExtraItem {
                    title: "Status page updated".into(),
                    phase: Phase::Post,
                    after: None,
                    optional: true,
                },
            ],
            rehearsed_on: None,
            pitr: false,
        };
        let items = items(&settings, &["smoke_test"]).unwrap();
        let smoke = items.iter().find(|i| i.id == "smoke_test").unwrap();
        assert_eq!(smoke.operation, Some(Operation::Hook(HookStep::SmokeTest)));
        let titles: Vec<&str> = items.iter().map(|i| i.title.as_str()).collect();
        let team = titles.iter().position(|t| *t == "Team notified").unwrap();
        assert_eq!(titles[team + 1], "Feature flag checkout_v2 off");
        assert_eq!(*titles.last().unwrap(), "Status page updated");
        assert!(!titles.contains(&"Off-hours window"));
        let e = super::items(
            &ChecklistSettings {
                remove: vec!["nope".into()],
                ..ChecklistSettings::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("no checklist item 'nope'") && e.contains("backup"),
            "{e}"
        );
        assert!(
            super::items(
                &ChecklistSettings {
                    remove: vec!["deploy".into()],
                    ..ChecklistSettings::default()
                },
                &[],
            )
            .is_err()
        );
    }

    #[test]
    fn the_rehearsal_comes_first_and_staging_is_checked_where_an_environment_is_named() {
        let plain = items(&ChecklistSettings::default(), &[]).unwrap();
        assert_eq!(plain[0].operation, Some(Operation::Rehearse));
        assert_eq!(plain[1].id, "backup");
        let staging = plain.iter().find(|i| i.id == "staging").unwrap();
        assert_eq!(
            staging.operation, None,
            "a tick where nothing names staging"
        );
        let checked = items(
            &ChecklistSettings {
                rehearsed_on: Some("stage-eu".into()),
                ..ChecklistSettings::default()
            },
            &[],
        )
        .unwrap();
        let staging = checked.iter().find(|i| i.id == "staging").unwrap();
        assert_eq!(staging.operation, Some(Operation::CheckRehearsed));
        assert_eq!(staging.title, "Migration tested on stage-eu");
    }

    #[test]
    fn pitr_mode_checks_a_base_backup_archiving_and_a_restore_point_instead_of_a_dump() {
        let settings = ChecklistSettings {
            pitr: true,
            ..ChecklistSettings::default()
        };
        let pitr = items(&settings, &[]).unwrap();
        let ids: Vec<&str> = pitr.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            &ids[..5],
            [
                "rehearsal",
                "base_backup",
                "archiving",
                "restore_point",
                "plan"
            ]
        );
        assert!(!ids.contains(&"backup") && !ids.contains(&"verify_backup"));
        let operations: Vec<_> = pitr[1..4].iter().map(|i| i.operation).collect();
        assert_eq!(
            operations,
            [
                Some(Operation::BaseBackupRecent),
                Some(Operation::ArchivingHealthy),
                Some(Operation::RestorePoint)
            ]
        );
        let kept = pitr.iter().find(|i| i.id == "backup_retained").unwrap();
        assert_eq!(kept.title, "Base backup and WAL retained");
        // Its own ids are the ones an environment removes; the dump's are unknown here.
        let removed = ChecklistSettings {
            remove: vec!["restore_point".into()],
            ..settings.clone()
        };
        assert!(
            !items(&removed, &[])
                .unwrap()
                .iter()
                .any(|i| i.id == "restore_point")
        );
        let e = items(
            &ChecklistSettings {
                remove: vec!["verify_backup".into()],
                ..settings
            },
            &[],
        )
        .unwrap_err();
        assert!(e.contains("no checklist item 'verify_backup'"), "{e}");
        assert!(e.contains("archiving"), "{e}");

        // The same gate as a dump's, worded for the stanza.
        let mut c = Checklist::new(
            pitr,
            Facts {
                protected: true,
                verified_backup: Err("the last WAL segment archived is 2h old".into()),
                pitr: true,
                unacknowledged: vec![],
            },
        );
        let deploy = c.index_of("deploy").unwrap();
        for i in 0..deploy {
            c.tick(i, None)
                .or_else(|_| c.start(i).map(|()| c.finish(i, Ok(String::new()))))
                .unwrap();
        }
        assert_eq!(
            c.gate(deploy).as_deref(),
            Some(
                "needs a recent base backup and healthy archiving: the last WAL segment archived is 2h old"
            )
        );
        c.set_facts(Facts {
            protected: true,
            verified_backup: Ok("base backup 20261202-021030F of stanza main".into()),
            pitr: true,
            unacknowledged: vec![],
        });
        assert_eq!(c.gate(deploy), None);
    }

    #[test]
    fn a_failed_step_can_be_run_again() {
        let mut c = list(false);
        c.start(0).unwrap();
        c.finish(0, Err("pg_dump: disk full".into()));
        assert!(matches!(c.state(1), State::Locked(_)));
        c.start(0).unwrap();
    }
}
