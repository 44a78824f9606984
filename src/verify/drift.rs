//! Drift: where the target's schema and the schema its migrations build part ways, as a list of
//! objects to look at, each on its side.

use std::collections::BTreeSet;

use serde::Serialize;

use super::catalog::{ObjectKind, Schema};

/// Which side has the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// In the database, but no migration makes it: changed by hand, or a migration's effect
    /// undone there.
    OnlyInDatabase,
    /// A migration makes it, but the database lacks it.
    OnlyInMigrations,
    /// Both have it, defined differently.
    Differs,
}

impl Side {
    pub fn words(self) -> &'static str {
        match self {
            Side::OnlyInDatabase => "in the database but not in the migrations",
            Side::OnlyInMigrations => "in the migrations but not in the database",
            Side::Differs => "defined differently",
        }
    }
}

/// One thing to put right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub kind: ObjectKind,
    pub name: String,
    pub side: Side,
    /// Its definition in the database (absent when only the migrations have it).
    pub database: Option<String>,
    /// Its definition as the migrations build it.
    pub migrations: Option<String>,
}

/// Compares the target's schema with the one its migrations build. An object whose parent is
/// missing on the same side is not listed again (a missing table is one difference, not one per
/// column); an enum whose values differ is listed by its values.
pub fn compare(database: &Schema, migrations: &Schema) -> Vec<Difference> {
    let mut out = Vec::new();
    let keys: BTreeSet<_> = database
        .objects
        .keys()
        .chain(migrations.objects.keys())
        .collect();
    for key in &keys {
        let (kind, name) = key;
        let db = database.objects.get(key);
        let mig = migrations.objects.get(key);
        let side = match (db, mig) {
            (Some(_), None) => Side::OnlyInDatabase,
            (None, Some(_)) => Side::OnlyInMigrations,
            (Some(a), Some(b)) if a.definition != b.definition => Side::Differs,
            _ => continue,
        };
        let object = db.or(mig);
        let parent_missing =
            object
                .and_then(|o| o.parent.as_ref())
                .is_some_and(|parent| match side {
                    Side::OnlyInDatabase => !migrations.objects.contains_key(parent),
                    Side::OnlyInMigrations => !database.objects.contains_key(parent),
                    Side::Differs => false,
                });
        if parent_missing {
            continue;
        }
        out.push(Difference {
            kind: *kind,
            name: name.clone(),
            side,
            database: db.map(|o| o.definition.clone()),
            migrations: mig.map(|o| o.definition.clone()),
        });
    }
    // An enum whose values were added or removed differs in its list too: its values say it.
    let enums_with_value_changes: BTreeSet<String> = out
        .iter()
        .filter(|d| d.kind == ObjectKind::EnumValue)
        .filter_map(|d| {
            let key = (d.kind, d.name.clone());
            database
                .objects
                .get(&key)
                .or(migrations.objects.get(&key))
                .and_then(|o| o.parent.as_ref())
                .map(|(_, p)| p.clone())
        })
        .collect();
    out.retain(|d| !(d.kind == ObjectKind::Enum && enums_with_value_changes.contains(&d.name)));
    out.sort_by(|a, b| (a.side, a.kind, &a.name).cmp(&(b.side, b.kind, &b.name)));
    out
}

#[cfg(test)]
mod tests {
    use super::super::catalog::Object;
    use super::*;

    /// Kind, name, definition, parent.
    type Row<'a> = (ObjectKind, &'a str, &'a str, Option<(ObjectKind, &'a str)>);

    fn schema(objects: &[Row<'_>]) -> Schema {
        let mut s = Schema::default();
        for (kind, name, def, parent) in objects {
            s.objects.insert(
                (*kind, (*name).to_owned()),
                Object {
                    definition: (*def).to_owned(),
                    parent: parent.map(|(k, n)| (k, n.to_owned())),
                    schema: "public".into(),
                },
            );
        }
        s
    }

    #[test]
    fn differences_are_one_per_object_on_their_side() {
        use ObjectKind::*;
        let t = Some((Table, "public.\"User\""));
        let e = Some((Enum, "public.\"Role\""));
        let database = schema(&[
            (Table, "public.\"User\"", "table", None),
            (Column, "public.\"User\".id", "integer NOT NULL", t),
            (Column, "public.\"User\".nickname", "text", t),
            (Column, "public.\"User\".name", "text", t),
            (Table, "public.\"Audit\"", "table", None),
            (
                Column,
                "public.\"Audit\".at",
                "timestamp",
                Some((Table, "public.\"Audit\"")),
            ),
            (Enum, "public.\"Role\"", "'USER', 'ADMIN', 'GUEST'", None),
            (EnumValue, "public.\"Role\" 'USER'", "", e),
            (EnumValue, "public.\"Role\" 'ADMIN'", "", e),
            (EnumValue, "public.\"Role\" 'GUEST'", "", e),
        ]);
        let migrations = schema(&[
            (Table, "public.\"User\"", "table", None),
            (Column, "public.\"User\".id", "integer NOT NULL", t),
            (Column, "public.\"User\".name", "text NOT NULL", t),
            (Index, "public.\"User_name_idx\"", "CREATE INDEX ...", t),
            (Enum, "public.\"Role\"", "'USER', 'ADMIN'", None),
            (EnumValue, "public.\"Role\" 'USER'", "", e),
            (EnumValue, "public.\"Role\" 'ADMIN'", "", e),
        ]);
        let differences = compare(&database, &migrations);
        let found: Vec<(ObjectKind, &str, Side)> = differences
            .iter()
            .map(|d| (d.kind, d.name.as_str(), d.side))
            .collect();
        assert_eq!(
            found,
            vec![
                (EnumValue, "public.\"Role\" 'GUEST'", Side::OnlyInDatabase),
                (Table, "public.\"Audit\"", Side::OnlyInDatabase),
                (Column, "public.\"User\".nickname", Side::OnlyInDatabase),
                (Index, "public.\"User_name_idx\"", Side::OnlyInMigrations),
                (Column, "public.\"User\".name", Side::Differs),
            ]
        );
    }
}
