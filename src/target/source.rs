//! Where a target's URL came from: the setting that named it, the variable it was read from and
//! the `.env` file that held that variable, so that `status` can say which database it reads and
//! why without showing the URL's password.

use std::path::PathBuf;

/// The setting that chose the URL, in the order they are consulted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NamedBy {
    /// Given on the command line.
    CommandLine,
    /// The environment's `database_url` or `database_url_env` in the config file.
    Config { environment: String, key: String },
    /// Prisma's `directUrl` in the schema's datasource: the direct (unpooled) connection Prisma
    /// itself migrates through.
    PrismaDirectUrl { schema: PathBuf },
    /// Prisma's `url` in the schema's datasource (no `directUrl` there).
    PrismaUrl { schema: PathBuf },
    /// `datasource.url` in `prisma.config.ts` (Prisma 7 keeps the URL there).
    PrismaConfigUrl { file: PathBuf },
    /// `$DATABASE_URL`, with no schema naming anything else.
    DatabaseUrl,
    /// No URL anywhere: the libpq variables (`PGHOST`, ...) and their defaults.
    Libpq,
}

/// Where a target's URL came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UrlSource {
    pub named_by: NamedBy,
    /// The variable the URL was read from; None for a URL written out (or none at all).
    pub variable: Option<String>,
    /// The `.env` file that held the variable; None when it came from the process environment.
    pub file: Option<PathBuf>,
    /// Prisma's `directUrl` names this variable, which is not set: the URL is the pooled one,
    /// and what changes the schema or takes the migration lock must not run through it.
    pub direct_unset: Option<String>,
}

impl UrlSource {
    pub fn new(named_by: NamedBy) -> UrlSource {
        UrlSource {
            named_by,
            variable: None,
            file: None,
            direct_unset: None,
        }
    }

    /// Whether the URL is the direct connection Prisma's `directUrl` names.
    pub fn is_direct(&self) -> bool {
        matches!(self.named_by, NamedBy::PrismaDirectUrl { .. })
    }
}
