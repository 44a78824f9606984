//! A database's schema as a set of named objects, each with a normalised definition, read from
//! the system catalogs.
//!
//! Why catalog queries and not a normalised `pg_dump -s`: a dump is text whose layout, ordering
//! and `SET` preamble change between pg_dump versions (13 to 17 each added or reordered
//! something), and a text diff cannot say "this column's default differs" or "this enum lacks
//! a value", only which lines moved. The catalogs say what each object is, and the server's own
//! deparsers (`format_type`, `pg_get_expr`, `pg_get_indexdef`, `pg_get_constraintdef`,
//! `pg_get_viewdef`, `pg_get_functiondef`, `pg_get_triggerdef`) normalise every definition the
//! way PostgreSQL itself prints it. Those deparsers do change a little between versions, so both
//! sides are always read on the same server: the target's schema arrives there by `pg_dump`
//! (made to carry a schema forward across versions), the migrations are built beside it, and
//! every query below uses only catalog columns that PostgreSQL 13 to 17 all have.
//!
//! Objects that belong to an extension are the extension's business and are left out; so is
//! the migration ledger.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::Client;

use crate::db::query_error;
use crate::error::Result;
use crate::migrate::ledger;

/// The kinds of object compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Schema,
    Extension,
    Enum,
    EnumValue,
    Domain,
    Sequence,
    Table,
    Column,
    Constraint,
    Index,
    View,
    Function,
    Trigger,
    Policy,
    /// A composite type.
    Type,
}

impl ObjectKind {
    pub fn word(self) -> &'static str {
        match self {
            ObjectKind::Schema => "schema",
            ObjectKind::Extension => "extension",
            ObjectKind::Enum => "enum",
            ObjectKind::EnumValue => "enum value",
            ObjectKind::Domain => "domain",
            ObjectKind::Sequence => "sequence",
            ObjectKind::Table => "table",
            ObjectKind::Column => "column",
            ObjectKind::Constraint => "constraint",
            ObjectKind::Index => "index",
            ObjectKind::View => "view",
            ObjectKind::Function => "function",
            ObjectKind::Trigger => "trigger",
            ObjectKind::Policy => "policy",
            ObjectKind::Type => "type",
        }
    }
}

/// One object: what it is, and the object it belongs to (a column's table, an enum value's
/// enum), so that a table missing on one side is one difference, not one per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub definition: String,
    pub parent: Option<(ObjectKind, String)>,
    /// The schema it lives in (an extension: the schema of its objects; a schema: itself).
    pub schema: String,
}

/// A schema, keyed by kind and qualified name.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub objects: BTreeMap<(ObjectKind, String), Object>,
}

/// Namespaces of the user's objects: not the system's, not an extension's.
const USER_NAMESPACE: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
    AND n.nspname NOT LIKE 'pg\\_%'";

/// Not a member of an extension (`classid` is the catalog the object lives in).
fn not_in_extension(classid: &str, oid: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = '{classid}'::regclass \
         AND d.objid = {oid} AND d.deptype = 'e')"
    )
}

/// Each query returns (kind, name, definition, parent kind, parent name, schema), text all
/// through.
fn queries() -> Vec<(&'static str, String)> {
    let ns = USER_NAMESPACE;
    let rel = not_in_extension("pg_catalog.pg_class", "c.oid");
    let ledger_name = ledger::TABLE;
    vec![
        (
            "schemas",
            format!(
                "SELECT 'schema', quote_ident(n.nspname), '', NULL, NULL, n.nspname::text
                   FROM pg_catalog.pg_namespace n
                  WHERE {ns} AND {}",
                not_in_extension("pg_catalog.pg_namespace", "n.oid")
            ),
        ),
        (
            "extensions",
            "SELECT 'extension', quote_ident(e.extname), 'in schema ' || quote_ident(n.nspname), NULL, NULL,
                    n.nspname::text
               FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
                .to_owned(),
        ),
        (
            "enums",
            format!(
                "SELECT 'enum', format('%I.%I', n.nspname, t.typname),
                        string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder), NULL, NULL,
                        n.nspname::text
                   FROM pg_catalog.pg_type t
                   JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                   JOIN pg_catalog.pg_enum e ON e.enumtypid = t.oid
                  WHERE {ns} AND {}
                  GROUP BY n.nspname, t.typname",
                not_in_extension("pg_catalog.pg_type", "t.oid")
            ),
        ),
        (
            "enum values",
            format!(
                "SELECT 'enum_value', format('%I.%I', n.nspname, t.typname) || ' ' || quote_literal(e.enumlabel),
                        '', 'enum', format('%I.%I', n.nspname, t.typname), n.nspname::text
                   FROM pg_catalog.pg_type t
                   JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                   JOIN pg_catalog.pg_enum e ON e.enumtypid = t.oid
                  WHERE {ns} AND {}",
                not_in_extension("pg_catalog.pg_type", "t.oid")
            ),
        ),
        (
            "domains",
            format!(
                "SELECT 'domain', format('%I.%I', n.nspname, t.typname),
                        concat_ws(' ', pg_catalog.format_type(t.typbasetype, t.typtypmod),
                                  CASE WHEN t.typnotnull THEN 'NOT NULL' END,
                                  'DEFAULT ' || t.typdefault,
                                  (SELECT string_agg(pg_catalog.pg_get_constraintdef(k.oid), ' ' ORDER BY k.conname)
                                     FROM pg_catalog.pg_constraint k WHERE k.contypid = t.oid)),
                        NULL, NULL, n.nspname::text
                   FROM pg_catalog.pg_type t
                   JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                  WHERE t.typtype = 'd' AND {ns} AND {}",
                not_in_extension("pg_catalog.pg_type", "t.oid")
            ),
        ),
        (
            "sequences",
            // An identity column's sequence is part of the column.
            format!(
                "SELECT 'sequence', format('%I.%I', n.nspname, c.relname),
                        format('%s START %s INCREMENT %s MINVALUE %s MAXVALUE %s%s',
                               pg_catalog.format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
                               s.seqmin, s.seqmax, CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END),
                        NULL, NULL, n.nspname::text
                   FROM pg_catalog.pg_sequence s
                   JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE {ns} AND {rel}
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                     WHERE d.classid = 'pg_catalog.pg_class'::regclass
                                       AND d.objid = c.oid AND d.deptype = 'i')"
            ),
        ),
        (
            "tables",
            format!(
                "SELECT 'table', format('%I.%I', n.nspname, c.relname),
                        CASE c.relpersistence WHEN 'u' THEN 'unlogged ' ELSE '' END
                        || CASE c.relkind WHEN 'p' THEN 'partitioned table' WHEN 'f' THEN 'foreign table'
                                          ELSE 'table' END
                        || CASE WHEN c.relkind = 'p'
                                THEN ' PARTITION BY ' || pg_catalog.pg_get_partkeydef(c.oid) ELSE '' END
                        || CASE WHEN c.relispartition
                                THEN ' partition of ' || (SELECT i.inhparent::regclass::text
                                                            FROM pg_catalog.pg_inherits i
                                                           WHERE i.inhrelid = c.oid LIMIT 1)
                                     || ' ' || pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                                ELSE coalesce(' INHERITS (' || (SELECT string_agg(i.inhparent::regclass::text, ', '
                                                                                  ORDER BY i.inhseqno)
                                                                  FROM pg_catalog.pg_inherits i
                                                                 WHERE i.inhrelid = c.oid) || ')', '') END
                        || CASE WHEN c.relrowsecurity THEN ', row level security' ELSE '' END
                        || CASE WHEN c.relforcerowsecurity THEN ' (forced)' ELSE '' END,
                        NULL, NULL, n.nspname::text
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('r', 'p', 'f') AND {ns} AND {rel}
                    AND NOT (c.relname = '{ledger_name}')"
            ),
        ),
        (
            "columns",
            format!(
                "SELECT 'column', format('%I.%I.%I', n.nspname, c.relname, a.attname),
                        concat_ws(' ', pg_catalog.format_type(a.atttypid, a.atttypmod),
                                  CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0
                                       THEN 'COLLATE ' || (SELECT quote_ident(co.collname)
                                                             FROM pg_catalog.pg_collation co
                                                            WHERE co.oid = a.attcollation) END,
                                  CASE WHEN a.attnotnull THEN 'NOT NULL' END,
                                  CASE WHEN a.attidentity = 'a' THEN 'GENERATED ALWAYS AS IDENTITY'
                                       WHEN a.attidentity = 'd' THEN 'GENERATED BY DEFAULT AS IDENTITY' END,
                                  CASE WHEN a.attgenerated = 's'
                                       THEN 'GENERATED ALWAYS AS (' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
                                       WHEN ad.adbin IS NOT NULL
                                       THEN 'DEFAULT ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) END),
                        'table', format('%I.%I', n.nspname, c.relname), n.nspname::text
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                   LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
                  WHERE c.relkind IN ('r', 'p', 'f') AND {ns} AND {rel}
                    AND NOT (c.relname = '{ledger_name}')"
            ),
        ),
        (
            "constraints",
            // NOT NULL constraints (contype 'n' from PostgreSQL 18) are part of the column.
            format!(
                "SELECT 'constraint', format('%I.%I.%I', n.nspname, c.relname, k.conname),
                        pg_catalog.pg_get_constraintdef(k.oid),
                        'table', format('%I.%I', n.nspname, c.relname), n.nspname::text
                   FROM pg_catalog.pg_constraint k
                   JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE k.contype IN ('p', 'u', 'f', 'c', 'x') AND {ns} AND {rel}
                    AND NOT (c.relname = '{ledger_name}')"
            ),
        ),
        (
            "indexes",
            // An index that carries a primary key, unique or exclusion constraint is that
            // constraint: one difference, not two.
            format!(
                "SELECT 'index', format('%I.%I', n.nspname, ic.relname),
                        pg_catalog.pg_get_indexdef(x.indexrelid)
                        || CASE WHEN NOT x.indisvalid THEN ' (INVALID)' ELSE '' END,
                        'table', format('%I.%I', n.nspname, c.relname), n.nspname::text
                   FROM pg_catalog.pg_index x
                   JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
                   JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE {ns} AND {rel}
                    AND NOT (c.relname = '{ledger_name}')
                    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                                     WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid
                                       AND k.contype IN ('p', 'u', 'x'))"
            ),
        ),
        (
            "views",
            format!(
                "SELECT 'view', format('%I.%I', n.nspname, c.relname),
                        CASE c.relkind WHEN 'm' THEN 'materialized view: ' ELSE '' END
                        || pg_catalog.pg_get_viewdef(c.oid, true),
                        NULL, NULL, n.nspname::text
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.relkind IN ('v', 'm') AND {ns} AND {rel}"
            ),
        ),
        (
            "functions",
            // Aggregates and window functions have no pg_get_functiondef.
            format!(
                "SELECT 'function',
                        format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)),
                        pg_catalog.pg_get_functiondef(p.oid), NULL, NULL, n.nspname::text
                   FROM pg_catalog.pg_proc p
                   JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                  WHERE p.prokind IN ('f', 'p') AND {ns} AND {}",
                not_in_extension("pg_catalog.pg_proc", "p.oid")
            ),
        ),
        (
            "triggers",
            format!(
                "SELECT 'trigger', format('%I.%I.%I', n.nspname, c.relname, g.tgname),
                        pg_catalog.pg_get_triggerdef(g.oid)
                        || CASE g.tgenabled WHEN 'D' THEN ' (DISABLED)' WHEN 'R' THEN ' (ENABLE REPLICA)'
                                            WHEN 'A' THEN ' (ENABLE ALWAYS)' ELSE '' END,
                        'table', format('%I.%I', n.nspname, c.relname), n.nspname::text
                   FROM pg_catalog.pg_trigger g
                   JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE NOT g.tgisinternal AND {ns} AND {rel}"
            ),
        ),
        (
            "policies",
            format!(
                "SELECT 'policy', format('%I.%I.%I', n.nspname, c.relname, p.polname),
                        concat_ws(' ', CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
                                  'FOR', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                                       WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                                  'TO', (SELECT string_agg(who, ', ' ORDER BY who)
                                           FROM (SELECT CASE WHEN r = 0 THEN 'PUBLIC'
                                                             ELSE quote_ident(pg_catalog.pg_get_userbyid(r)) END AS who
                                                   FROM unnest(p.polroles) AS r) AS roles),
                                  'USING (' || pg_catalog.pg_get_expr(p.polqual, p.polrelid) || ')',
                                  'WITH CHECK (' || pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) || ')'),
                        'table', format('%I.%I', n.nspname, c.relname), n.nspname::text
                   FROM pg_catalog.pg_policy p
                   JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE {ns} AND {rel}"
            ),
        ),
        (
            "composite types",
            format!(
                "SELECT 'type', format('%I.%I', n.nspname, t.typname),
                        (SELECT string_agg(quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod),
                                           ', ' ORDER BY a.attnum)
                           FROM pg_catalog.pg_attribute a
                          WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped),
                        NULL, NULL, n.nspname::text
                   FROM pg_catalog.pg_type t
                   JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                   JOIN pg_catalog.pg_class c ON c.oid = t.typrelid AND c.relkind = 'c'
                  WHERE t.typtype = 'c' AND {ns} AND {}",
                not_in_extension("pg_catalog.pg_type", "t.oid")
            ),
        ),
    ]
}

fn kind_of(word: &str) -> Option<ObjectKind> {
    Some(match word {
        "schema" => ObjectKind::Schema,
        "extension" => ObjectKind::Extension,
        "enum" => ObjectKind::Enum,
        "enum_value" => ObjectKind::EnumValue,
        "domain" => ObjectKind::Domain,
        "sequence" => ObjectKind::Sequence,
        "table" => ObjectKind::Table,
        "column" => ObjectKind::Column,
        "constraint" => ObjectKind::Constraint,
        "index" => ObjectKind::Index,
        "view" => ObjectKind::View,
        "function" => ObjectKind::Function,
        "trigger" => ObjectKind::Trigger,
        "policy" => ObjectKind::Policy,
        "type" => ObjectKind::Type,
        _ => return None,
    })
}

impl Schema {
    /// Reads every object of the database `client` is connected to. The queries run together
    /// in one repeatable-read, read-only transaction, so they see one moment.
    pub async fn read(client: &Client) -> Result<Schema> {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| query_error("reading the schema", &e))?;
        let mut schema = Schema::default();
        let queries = queries();
        let results = futures_util::future::join_all(
            queries
                .iter()
                .map(|(_, sql)| client.query(sql.as_str(), &[])),
        )
        .await;
        let _ = client.batch_execute("COMMIT").await;
        for ((what, _), rows) in queries.iter().zip(results) {
            let rows = rows.map_err(|e| query_error(&format!("reading the {what}"), &e))?;
            for r in rows {
                let Some(kind) = kind_of(r.get::<_, &str>(0)) else {
                    continue;
                };
                let parent = match (r.get::<_, Option<&str>>(3), r.get::<_, Option<String>>(4)) {
                    (Some(k), Some(name)) => kind_of(k).map(|k| (k, name)),
                    _ => None,
                };
                schema.objects.insert(
                    (kind, r.get(1)),
                    Object {
                        definition: r.get::<_, Option<String>>(2).unwrap_or_default(),
                        parent,
                        schema: r.get(5),
                    },
                );
            }
        }
        Ok(schema)
    }

    /// The schemas the objects live in (raw names); an extension's schema (plpgsql's is
    /// pg_catalog) counts only through the objects there.
    pub fn schemas(&self) -> std::collections::BTreeSet<String> {
        self.objects
            .iter()
            .filter(|((kind, _), _)| *kind != ObjectKind::Extension)
            .map(|(_, o)| o.schema.clone())
            .collect()
    }

    /// Only the objects in `schemas`.
    pub fn within(&self, schemas: &std::collections::BTreeSet<String>) -> Schema {
        Schema {
            objects: self
                .objects
                .iter()
                .filter(|(_, o)| schemas.contains(&o.schema))
                .map(|(k, o)| (k.clone(), o.clone()))
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}
