//! How pgdeck weighs each squawk rule: the runbook's severity, and whether the risk grows with
//! the table (a lock held while scanning) or not (code that breaks whatever the size).

use squawk_linter::Rule;

use super::Severity;

/// What kind of risk a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Holds a lock while it works through the table: harmless on an empty table, an outage on
    /// a large one. Live table sizes move these up or down.
    Blocking,
    /// Breaks code that runs against the old schema, or loses data, whatever the size.
    Breaking,
    /// Advice on types and style; never blocks a deploy.
    Style,
}

/// The severity and category pgdeck gives a squawk rule.
pub fn weigh(rule: Rule) -> (Severity, Category) {
    use Category::*;
    use Severity::*;
    match rule {
        Rule::RequireConcurrentIndexCreation
        | Rule::ChangingColumnType
        | Rule::AddingNotNullableField
        | Rule::AddingSerialPrimaryKeyField
        | Rule::DisallowedUniqueConstraint
        | Rule::RequireConcurrentReindex
        | Rule::BanConcurrentIndexCreationInTransaction => (Dangerous, Blocking),
        Rule::AddingFieldWithDefault
        | Rule::AddingForeignKeyConstraint
        | Rule::ConstraintMissingNotValid
        | Rule::RequireConcurrentIndexDeletion
        | Rule::RequireConcurrentPartitionDetach
        | Rule::PreferRepack
        | Rule::BanCreateDomainWithConstraint
        | Rule::BanAlterDomainWithAddConstraint => (Care, Blocking),
        Rule::BanDropColumn
        | Rule::BanDropTable
        | Rule::RenamingColumn
        | Rule::RenamingTable
        | Rule::AddingRequiredField
        | Rule::BanDropDatabase
        | Rule::BanDropSchema
        | Rule::BanTruncateCascade => (Dangerous, Breaking),
        Rule::RequireLockTimeout | Rule::RequireStatementTimeout => (Care, Blocking),
        Rule::PreferBigintOverInt
        | Rule::PreferBigintOverSmallint
        | Rule::PreferIdentity
        | Rule::PreferTextField
        | Rule::PreferTimestampTz
        | Rule::BanCharField
        | Rule::PreferRobustStmts
        | Rule::IdentifierTooLong
        | Rule::RequireEnumValueOrdering
        | Rule::RequireTableSchema
        | Rule::UnusedIgnore => (Safe, Style),
        // Drops, renames and moves of other objects, and everything else: code may depend on them.
        _ => (Care, Breaking),
    }
}

/// Rules pgdeck switches off whatever the configuration says, because its runner does the job:
/// it folds BEGIN/COMMIT into the migration's own transaction and runs each migration in one.
pub const HANDLED_BY_RUNNER: &[Rule] = &[Rule::TransactionNesting, Rule::BanUncommittedTransaction];

/// Rules about timeouts the runner sets itself (`lock_timeout`): reported only where that runner
/// setting is switched off in the configuration.
pub const TIMEOUT_RULES: &[Rule] = &[Rule::RequireLockTimeout, Rule::RequireStatementTimeout];

/// The squawk rules that already cover one of pgdeck's own statement rules. Where one of them is
/// enabled, pgdeck adds no finding of its own (squawk's is shown), and `pgdeck:allow` and
/// `-- squawk-ignore` accept either name.
pub fn covered_by(pgdeck_rule: &str) -> &'static [Rule] {
    match pgdeck_rule {
        "drop-column" => &[Rule::BanDropColumn],
        "drop-table" => &[Rule::BanDropTable],
        "rename-column" => &[Rule::RenamingColumn],
        "rename-table" => &[Rule::RenamingTable],
        "change-column-type" => &[Rule::ChangingColumnType],
        "set-not-null" => &[Rule::AddingNotNullableField],
        "add-required-column" => &[Rule::AddingRequiredField],
        "create-index" => &[Rule::RequireConcurrentIndexCreation],
        "drop-index" => &[Rule::RequireConcurrentIndexDeletion],
        "add-foreign-key" => &[
            Rule::AddingForeignKeyConstraint,
            Rule::ConstraintMissingNotValid,
        ],
        "add-check-constraint" => &[Rule::ConstraintMissingNotValid],
        // A primary key or unique constraint: squawk flags it up to three times over.
        "add-unique-constraint" => &[
            Rule::DisallowedUniqueConstraint,
            Rule::AddingSerialPrimaryKeyField,
            Rule::ConstraintMissingNotValid,
        ],
        "serial-column" => &[
            Rule::AddingFieldWithDefault,
            Rule::AddingSerialPrimaryKeyField,
        ],
        "volatile-default" | "generated-column" => &[Rule::AddingFieldWithDefault],
        "drop-object" => &[
            Rule::BanDropView,
            Rule::BanDropFunction,
            Rule::BanDropType,
            Rule::BanDropTrigger,
        ],
        "reindex" => &[Rule::RequireConcurrentReindex],
        "detach-partition" => &[Rule::RequireConcurrentPartitionDetach],
        "drop-schema" => &[Rule::BanDropSchema, Rule::BanDropDatabase],
        "drop-not-null" => &[Rule::BanDropNotNull],
        "drop-constraint" => &[Rule::BanDropConstraint],
        "set-schema" => &[Rule::BanSetSchema],
        _ => &[],
    }
}

/// Whether an acknowledgement naming `allowed` covers a finding of rule `finding`.
pub fn allows(allowed: &str, finding: &str) -> bool {
    allowed == finding || covered_by(allowed).iter().any(|r| r.to_string() == finding)
}

/// Whether two rule names (squawk's or pgdeck's) flag the same problem: the same rule, or both
/// covered by one of pgdeck's rules (or one the other's pgdeck rule).
pub fn same_problem(a: &str, b: &str) -> bool {
    const PGDECK_RULES: [&str; 22] = [
        "drop-column",
        "drop-table",
        "rename-column",
        "rename-table",
        "change-column-type",
        "set-not-null",
        "add-required-column",
        "create-index",
        "drop-index",
        "add-foreign-key",
        "add-check-constraint",
        "add-unique-constraint",
        "serial-column",
        "volatile-default",
        "generated-column",
        "drop-object",
        "reindex",
        "detach-partition",
        "drop-schema",
        "drop-not-null",
        "drop-constraint",
        "set-schema",
    ];
    if a == b {
        return true;
    }
    let names = |p: &str| -> Vec<String> {
        std::iter::once(p.to_owned())
            .chain(covered_by(p).iter().map(|r| r.to_string()))
            .collect()
    };
    PGDECK_RULES.iter().any(|p| {
        let group = names(p);
        group.iter().any(|n| n == a) && group.iter().any(|n| n == b)
    })
}

/// squawk's rules that fire on several kinds of change (a constraint without NOT VALID, a
/// column with a default): when one finding has two names, the more specific one leads.
pub fn is_generic(rule: &str) -> bool {
    [
        Rule::ConstraintMissingNotValid,
        Rule::AddingFieldWithDefault,
    ]
    .iter()
    .any(|r| r.to_string() == rule)
}
