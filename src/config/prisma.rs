//! A Prisma project as Prisma itself reads it, for what a `pgdeck.toml` leaves unsaid: the
//! schema (`package.json`'s `"prisma": {"schema": ...}`, `prisma.config.ts`'s `schema`, then
//! `prisma/schema.prisma` or `./schema.prisma`), the migrations folder beside it (or
//! `prisma.config.ts`'s `migrations.path`), the schema's datasource (`url`, `directUrl`), and the
//! `.env` files Prisma loads (`./.env`, the schema's folder, `prisma/.env`). `prisma.config.ts` is
//! read, never run: only values written as plain literals (or `env("NAME")`) are understood, and
//! anything cleverer is an error that asks for the value to be given instead. The real
//! environment always wins over a `.env` file, and no file is ever written to the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::db::files::{self, Refused};
use crate::error::{Error, Result};
use crate::migrate::FolderSource;
use crate::target::Vars;

/// How a URL is given in a schema's datasource or in `prisma.config.ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlValue {
    /// `env("NAME")`: read from that variable.
    Env(String),
    /// Written out.
    Literal(String),
}

/// The schema's datasource, as far as connecting goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Datasource {
    pub provider: Option<String>,
    pub url: Option<UrlValue>,
    /// The direct (unpooled) connection Prisma migrates through, when the application's `url`
    /// goes through a pooler such as PgBouncer.
    pub direct_url: Option<UrlValue>,
}

/// The Prisma schema the project uses, and the file that holds its datasource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// As named: a file, or the folder of a multi-file schema.
    pub path: PathBuf,
    /// The file with the `datasource` block, if any has one.
    pub datasource_file: Option<PathBuf>,
    pub datasource: Option<Datasource>,
}

impl Schema {
    /// The folder the schema lives in: where Prisma keeps `migrations/` and a `.env`.
    pub fn folder(&self) -> PathBuf {
        folder_of(&self.path)
    }
}

/// What `prisma.config.ts` (or its `.js` / `.mts` / ... twins) says, read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrismaConfig {
    pub file: PathBuf,
    pub schema: Field,
    pub migrations_path: Field,
    /// `datasource.url` (Prisma 7 keeps the URL the CLI uses here).
    pub datasource_url: Field,
    pub datasource_direct_url: Field,
}

/// The URLs `prisma.config.ts`'s `datasource` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUrls {
    pub file: PathBuf,
    pub url: Option<UrlValue>,
    pub direct: Option<UrlValue>,
}

/// A value in `prisma.config.ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Absent,
    /// A plain string literal.
    Literal(String),
    /// `env("NAME")` or `process.env.NAME`.
    Env(String),
    /// Anything else (a call, a variable, a template with `${}`): pgdeck does not run
    /// TypeScript, so it cannot know the value.
    Computed,
}

/// The project in `root` (the folder pgdeck runs in), read once.
#[derive(Debug)]
pub struct Project {
    root: PathBuf,
    package_schema: Result<Option<PathBuf>>,
    config: Result<Option<PrismaConfig>>,
}

/// The names Prisma looks for its config under, in its order.
const CONFIG_FILES: &[&str] = &[
    "prisma.config.ts",
    "prisma.config.mts",
    "prisma.config.cts",
    "prisma.config.js",
    "prisma.config.mjs",
    "prisma.config.cjs",
];

impl Project {
    /// Reads `package.json` and `prisma.config.ts` in `root` (an empty path is the current
    /// folder); a problem with either is kept and reported only by what needs that file.
    pub fn read(root: &Path) -> Project {
        Project {
            root: root.to_owned(),
            package_schema: package_json_schema(root),
            config: prisma_config(root),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn config(&self) -> Result<Option<&PrismaConfig>> {
        self.config
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    /// The migrations folder as Prisma finds it, and why: beside the schema `package.json`
    /// names; `prisma.config.ts`'s `migrations.path` (or beside its `schema`); `prisma/migrations`
    /// when `prisma/schema.prisma` exists, or when `./migrations` is missing or holds no
    /// migration; else `./migrations`.
    pub fn migrations_dir(&self) -> Result<(PathBuf, FolderSource)> {
        if let Some(schema) = self.package_schema.clone()? {
            return Ok((
                folder_of(&schema).join("migrations"),
                FolderSource::PackageJson { schema },
            ));
        }
        if let Some(cfg) = self.config()? {
            match &cfg.migrations_path {
                Field::Literal(p) => {
                    return Ok((
                        self.beside(&cfg.file, p),
                        FolderSource::PrismaConfig {
                            file: cfg.file.clone(),
                        },
                    ));
                }
                Field::Absent => {}
                Field::Env(_) | Field::Computed => {
                    return Err(computed(&cfg.file, "migrations.path"));
                }
            }
            match &cfg.schema {
                Field::Literal(s) => {
                    let schema = self.beside(&cfg.file, s);
                    return Ok((
                        folder_of(&schema).join("migrations"),
                        FolderSource::PrismaConfigSchema {
                            file: cfg.file.clone(),
                            schema,
                        },
                    ));
                }
                Field::Absent => {}
                Field::Env(_) | Field::Computed => {
                    return Err(computed(&cfg.file, "schema"));
                }
            }
        }
        let prisma = self.root.join("prisma/migrations");
        if files::regular(&self.root.join("prisma/schema.prisma")).unwrap_or(false) {
            return Ok((prisma, FolderSource::PrismaSchema));
        }
        let ours = self.root.join("migrations");
        let state = holds_migrations(&ours);
        if state != Some(true) && prisma.is_dir() {
            return Ok((
                prisma,
                FolderSource::PrismaFolder {
                    migrations_empty: state == Some(false),
                },
            ));
        }
        Ok((ours, FolderSource::Default))
    }

    /// The schema Prisma would use, if there is one: `package.json`'s `prisma.schema`, then
    /// `prisma.config.ts`'s `schema`, then `prisma/schema.prisma`, then `./schema.prisma`.
    pub fn schema(&self) -> Result<Option<Schema>> {
        let named = match self.package_schema.clone()? {
            Some(path) => Some((path, "package.json's prisma.schema".to_owned())),
            None => match self.config()? {
                Some(cfg) => match &cfg.schema {
                    Field::Literal(s) => Some((
                        self.beside(&cfg.file, s),
                        format!("{}'s schema", cfg.file.display()),
                    )),
                    Field::Absent => None,
                    Field::Env(_) | Field::Computed => {
                        return Err(computed(&cfg.file, "schema"));
                    }
                },
                None => None,
            },
        };
        if let Some((path, by)) = named {
            return match read_schema(&path)? {
                Some(s) => Ok(Some(s)),
                None => Err(Error::input(
                    format!("{by} names {}, which does not exist", path.display()),
                    "fix the path, or remove it to use prisma/schema.prisma",
                )),
            };
        }
        for default in ["prisma/schema.prisma", "schema.prisma"] {
            if let Some(s) = read_schema(&self.root.join(default))? {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// `datasource.url` / `datasource.directUrl` of `prisma.config.ts`, when it sets them.
    pub fn config_urls(&self) -> Result<Option<ConfigUrls>> {
        let Some(cfg) = self.config()? else {
            return Ok(None);
        };
        let value = |f: &Field, key: &str| match f {
            Field::Absent => Ok(None),
            Field::Literal(u) => Ok(Some(UrlValue::Literal(u.clone()))),
            Field::Env(v) => Ok(Some(UrlValue::Env(v.clone()))),
            Field::Computed => Err(computed(&cfg.file, key)),
        };
        let url = value(&cfg.datasource_url, "datasource.url")?;
        let direct = value(&cfg.datasource_direct_url, "datasource.directUrl")?;
        Ok((url.is_some() || direct.is_some()).then(|| ConfigUrls {
            file: cfg.file.clone(),
            url,
            direct,
        }))
    }

    /// The `.env` files Prisma reads, in its order: `./.env`, the schema's folder, `prisma/.env`.
    pub fn dotenv(&self, schema_folder: Option<&Path>) -> Result<Dotenv> {
        let mut paths = vec![self.root.join(".env")];
        if let Some(f) = schema_folder {
            paths.push(f.join(".env"));
        }
        paths.push(self.root.join("prisma/.env"));
        let mut out = Dotenv::default();
        for path in paths {
            if out.files.iter().any(|f| same_file(&f.path, &path)) {
                continue;
            }
            if let Some(file) = EnvFile::read(&path)? {
                out.files.push(file);
            }
        }
        Ok(out)
    }

    /// A path written in `file` (relative to the file's folder, as Prisma reads it).
    fn beside(&self, file: &Path, written: &str) -> PathBuf {
        let base = file.parent().unwrap_or(&self.root);
        normalize(&base.join(written))
    }
}

/// `a/./b` and `./a` as `a/b`, `a`: paths are printed, and `./prisma/migrations` reads worse.
fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// The folder a schema lives in: the schema itself when it is a folder (multi-file schema).
fn folder_of(schema: &Path) -> PathBuf {
    if schema.is_dir() {
        schema.to_owned()
    } else {
        schema.parent().map(Path::to_owned).unwrap_or_default()
    }
}

/// Whether a folder holds at least one migration folder; None when it is missing.
fn holds_migrations(dir: &Path) -> Option<bool> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(entries.flatten().any(|e| {
        !e.file_name().as_encoded_bytes().starts_with(b".")
            && std::fs::metadata(e.path()).is_ok_and(|m| m.is_dir())
    }))
}

fn computed(file: &Path, key: &str) -> Error {
    Error::input(
        format!(
            "{} sets {key} to something other than a plain string, and pgdeck reads that file without running it",
            file.display()
        ),
        match key {
            "migrations.path" | "schema" => {
                "give the migrations folder with --migrations DIR (or `migrations` in pgdeck.toml), or write the value as a string literal"
            }
            _ => {
                "name the URL's variable with database_url_env in pgdeck.toml (or --database-url URL), or write env(\"NAME\") there"
            }
        },
    )
}

fn unreadable(path: &Path, e: &Refused) -> Error {
    Error::input(
        format!("{} is not read: {e}", path.display()),
        "make it a regular, readable UTF-8 file, or remove it",
    )
}

/// Reads a file that may be missing (None); anything but a readable regular file is an error.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match files::read_to_string(path, None) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(unreadable(path, &e)),
    }
}

/// `package.json`'s `"prisma": {"schema": "..."}`, relative to the project.
fn package_json_schema(root: &Path) -> Result<Option<PathBuf>> {
    let path = root.join("package.json");
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::input(
            format!("{} is not valid JSON: {e}", path.display()),
            "fix package.json (npm and Prisma cannot read it either)",
        )
    })?;
    match json.get("prisma").and_then(|p| p.get("schema")) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
            Ok(Some(normalize(&root.join(s.trim()))))
        }
        Some(_) => Err(Error::input(
            format!(
                "{}'s prisma.schema is not a path to the schema",
                path.display()
            ),
            "write it as \"prisma\": {\"schema\": \"prisma/schema.prisma\"}",
        )),
    }
}

/// The first Prisma config file in `root`, read as text.
fn prisma_config(root: &Path) -> Result<Option<PrismaConfig>> {
    for name in CONFIG_FILES {
        let path = root.join(name);
        if let Some(text) = read_optional(&path)? {
            return parse_prisma_config(&path, &text).map(Some);
        }
    }
    Ok(None)
}

/// Reads a schema file (or a folder of them), None when it does not exist.
fn read_schema(path: &Path) -> Result<Option<Schema>> {
    if path.is_dir() {
        let mut found = Vec::new();
        prisma_files(path, &mut found, 0);
        found.sort();
        for file in found {
            if let Some(text) = read_optional(&file)?
                && let Some(ds) = datasource(&text)
            {
                return Ok(Some(Schema {
                    path: path.to_owned(),
                    datasource_file: Some(file),
                    datasource: Some(ds),
                }));
            }
        }
        return Ok(Some(Schema {
            path: path.to_owned(),
            datasource_file: None,
            datasource: None,
        }));
    }
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let ds = datasource(&text);
    Ok(Some(Schema {
        path: path.to_owned(),
        datasource_file: ds.is_some().then(|| path.to_owned()),
        datasource: ds,
    }))
}

/// The `.prisma` files of a multi-file schema (its `migrations` and hidden folders left out).
fn prisma_files(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let path = e.path();
        if name.as_encoded_bytes().starts_with(b".") || name == "migrations" || out.len() > 1000 {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() && depth < 8 => prisma_files(&path, out, depth + 1),
            Ok(t) if t.is_file() && path.extension().is_some_and(|x| x == "prisma") => {
                out.push(path);
            }
            _ => {}
        }
    }
}

/// The `datasource` block of a schema: its provider, `url` and `directUrl`.
pub fn datasource(text: &str) -> Option<Datasource> {
    let code = strip_prisma_comments(text);
    let mut rest = code.as_str();
    let body = loop {
        let i = find_word(rest, "datasource")?;
        let after = &rest[i + "datasource".len()..];
        let after_name = after
            .trim_start()
            .trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
        if let Some(body) = after_name.trim_start().strip_prefix('{') {
            break body;
        }
        rest = after;
    };
    let body = &body[..body.find('}').unwrap_or(body.len())];
    let mut ds = Datasource::default();
    for line in body.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let url = || -> Option<UrlValue> {
            if let Some(inner) = value
                .strip_prefix("env")
                .map(str::trim_start)
                .and_then(|v| v.strip_prefix('('))
                .and_then(|v| v.trim_end().strip_suffix(')'))
            {
                return prisma_string(inner.trim()).map(UrlValue::Env);
            }
            prisma_string(value).map(UrlValue::Literal)
        };
        match key.trim() {
            "provider" => ds.provider = prisma_string(value),
            "url" => ds.url = url(),
            "directUrl" => ds.direct_url = url(),
            _ => {}
        }
    }
    Some(ds)
}

/// A double-quoted Prisma string, unescaped.
fn prisma_string(v: &str) -> Option<String> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The schema without its `//` and `///` comments (strings kept whole).
fn strip_prisma_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut escaped = false;
        let mut end = line.len();
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if in_string => escaped = true,
                b'"' => in_string = !in_string,
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..end]);
        out.push('\n');
    }
    out
}

/// The offset of `word` standing alone (not part of a longer identifier).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        if !before.is_some_and(ident) && !after.is_some_and(ident) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// A token of TypeScript or JavaScript, as far as reading a config object goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// A string literal; `plain` is false for a template with `${...}` in it.
    Str {
        value: String,
        plain: bool,
    },
    Punct(char),
    /// A number or anything else.
    Other,
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if c == '"' || c == '\'' || c == '`' {
            let quote = c;
            let mut value = String::new();
            let mut plain = true;
            i += 1;
            while i < chars.len() && chars[i] != quote {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                    value.push(match chars[i] {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                } else {
                    if quote == '`' && chars[i] == '$' && chars.get(i + 1) == Some(&'{') {
                        plain = false;
                    }
                    value.push(chars[i]);
                }
                i += 1;
            }
            i += 1;
            out.push(Token::Str { value, plain });
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Other);
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

fn is_open(t: &Token) -> bool {
    matches!(t, Token::Punct('{' | '[' | '('))
}

fn is_close(t: &Token) -> bool {
    matches!(t, Token::Punct('}' | ']' | ')'))
}

/// The members of the object literal whose `{` is at `open`: each key with its value's tokens.
fn members(tokens: &[Token], open: usize) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut i = open + 1;
    while i < tokens.len() && tokens[i] != Token::Punct('}') {
        let key = match &tokens[i] {
            Token::Ident(k) => Some(k.clone()),
            Token::Str { value, .. } => Some(value.clone()),
            _ => None,
        };
        let has_value = tokens.get(i + 1) == Some(&Token::Punct(':'));
        let start = if key.is_some() && has_value { i + 2 } else { i };
        // The value runs to the next comma (or the closing brace) at this depth.
        let mut depth = 0usize;
        let mut j = start;
        while j < tokens.len() {
            let t = &tokens[j];
            if depth == 0 && (t == &Token::Punct(',') || t == &Token::Punct('}')) {
                break;
            }
            if is_open(t) {
                depth += 1;
            } else if is_close(t) {
                depth = depth.saturating_sub(1);
            }
            j += 1;
        }
        if let Some(k) = key {
            // Shorthand (`{ migrations }`) is a member whose value is a variable.
            out.push((k, if has_value { start..j } else { i..j }));
        }
        i = if tokens.get(j) == Some(&Token::Punct(',')) {
            j + 1
        } else {
            j
        };
    }
    out
}

/// The value of `key` among an object's members.
fn field(tokens: &[Token], open: usize, key: &str) -> Option<std::ops::Range<usize>> {
    members(tokens, open)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, r)| r)
}

/// What a value's tokens say: a plain literal, an environment variable, or something computed.
fn classify(value: &[Token]) -> Field {
    let ident = |t: &Token, name: &str| matches!(t, Token::Ident(n) if n == name);
    let plain = |t: &Token| match t {
        Token::Str { value, plain: true } => Some(value.clone()),
        _ => None,
    };
    // A TypeScript non-null assertion (`process.env.X!`) changes nothing.
    let value = match value.split_last() {
        Some((Token::Punct('!'), rest)) => rest,
        _ => value,
    };
    match value {
        [s] => plain(s).map_or(Field::Computed, Field::Literal),
        [f, Token::Punct('('), s, Token::Punct(')')] if ident(f, "env") => {
            plain(s).map_or(Field::Computed, Field::Env)
        }
        [
            p,
            Token::Punct('.'),
            e,
            Token::Punct('.'),
            Token::Ident(name),
        ] if ident(p, "process") && ident(e, "env") => Field::Env(name.clone()),
        [
            p,
            Token::Punct('.'),
            e,
            Token::Punct('['),
            s,
            Token::Punct(']'),
        ] if ident(p, "process") && ident(e, "env") => plain(s).map_or(Field::Computed, Field::Env),
        _ => Field::Computed,
    }
}

/// Reads `prisma.config.ts` as text: the object given to `defineConfig(...)` (or exported as
/// the default), its `schema`, `migrations.path` and `datasource.url` / `directUrl`.
fn parse_prisma_config(path: &Path, text: &str) -> Result<PrismaConfig> {
    let tokens = tokenize(text);
    let object = config_object(&tokens).ok_or_else(|| {
        Error::input(
            format!(
                "{} does not hand defineConfig (or export default) an object written out, and pgdeck reads that file without running it",
                path.display()
            ),
            "give the migrations folder with --migrations DIR (or `migrations` in pgdeck.toml), or write defineConfig({ ... }) with string literals",
        )
    })?;
    let top = |key: &str| field(&tokens, object, key);
    let nested = |outer: &str, inner: &str| -> Field {
        match top(outer) {
            None => Field::Absent,
            Some(r) if tokens.get(r.start) == Some(&Token::Punct('{')) => {
                match field(&tokens, r.start, inner) {
                    Some(v) => classify(&tokens[v]),
                    None => Field::Absent,
                }
            }
            Some(_) => Field::Computed,
        }
    };
    Ok(PrismaConfig {
        file: path.to_owned(),
        schema: top("schema").map_or(Field::Absent, |r| classify(&tokens[r])),
        migrations_path: nested("migrations", "path"),
        datasource_url: nested("datasource", "url"),
        datasource_direct_url: nested("datasource", "directUrl"),
    })
}

/// The index of the config object's `{`: `defineConfig({`, `export default {`,
/// `module.exports = {`, or `export default NAME` of a `const NAME ... = {`.
fn config_object(tokens: &[Token]) -> Option<usize> {
    let ident = |i: usize, name: &str| matches!(tokens.get(i), Some(Token::Ident(n)) if n == name);
    let punct = |i: usize, c: char| tokens.get(i) == Some(&Token::Punct(c));
    for i in 0..tokens.len() {
        if ident(i, "defineConfig") && punct(i + 1, '(') {
            return punct(i + 2, '{').then_some(i + 2);
        }
    }
    for i in 0..tokens.len() {
        if ident(i, "export") && ident(i + 1, "default") {
            if punct(i + 2, '{') {
                return Some(i + 2);
            }
            if let Some(Token::Ident(name)) = tokens.get(i + 2) {
                // `const config = {` or `const config: PrismaConfig = {`.
                return (0..i).find_map(|j| {
                    let named = matches!(&tokens[j], Token::Ident(n) if n == name)
                        && j > 0
                        && (ident(j - 1, "const") || ident(j - 1, "let"));
                    if !named {
                        return None;
                    }
                    let eq = (j + 1..i).find(|&k| punct(k, '='))?;
                    punct(eq + 1, '{').then_some(eq + 1)
                });
            }
        }
        if ident(i, "module") && punct(i + 1, '.') && ident(i + 2, "exports") && punct(i + 3, '=') {
            return punct(i + 4, '{').then_some(i + 4);
        }
    }
    None
}

/// One `.env` file, parsed with dotenvy (Prisma's own reader is node's dotenv: same format,
/// `${VAR}` expansion included).
#[derive(Debug, Clone)]
struct EnvFile {
    path: PathBuf,
    vars: BTreeMap<String, String>,
    /// Lines that could not be parsed (1-based), for the hint when a variable is missing.
    bad_lines: Vec<usize>,
}

impl EnvFile {
    fn read(path: &Path) -> Result<Option<EnvFile>> {
        let Some(text) = read_optional(path)? else {
            return Ok(None);
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut vars = BTreeMap::new();
        let mut bad_lines = Vec::new();
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            match item {
                // The last definition wins, as with node's dotenv.
                Ok((k, v)) => {
                    vars.insert(k, v);
                }
                Err(dotenvy::Error::LineParse(line, _)) => {
                    let first = line.lines().next().unwrap_or_default();
                    let at = text
                        .lines()
                        .position(|l| !first.is_empty() && l.starts_with(first))
                        .map_or(0, |n| n + 1);
                    bad_lines.push(at);
                }
                Err(e) => {
                    return Err(Error::input(
                        format!("{} is not read: {e}", path.display()),
                        "make it a readable text file, or remove it",
                    ));
                }
            }
        }
        Ok(Some(EnvFile {
            path: path.to_owned(),
            vars,
            bad_lines,
        }))
    }
}

/// The `.env` files of a project: consulted for a variable the process environment lacks.
#[derive(Debug, Clone, Default)]
pub struct Dotenv {
    files: Vec<EnvFile>,
}

/// A variable's value and the file it came from (None: the process environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: String,
    pub file: Option<PathBuf>,
}

impl Dotenv {
    /// The files read, in order.
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path.as_path()).collect()
    }

    /// Whether any file defines `name` (its value is never shown).
    pub fn defines(&self, name: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|f| f.vars.get(name).is_some_and(|v| !v.is_empty()))
            .map(|f| f.path.as_path())
    }

    /// `name` from the process environment, else from the `.env` files. Two files that give it
    /// different values are an error, as they are to Prisma: which database a deploy goes to
    /// must not depend on which file was read first.
    pub fn lookup(&self, process: &dyn Vars, name: &str) -> Result<Option<Found>> {
        if let Some(value) = process.var(name) {
            return Ok(Some(Found { value, file: None }));
        }
        let defining: Vec<&EnvFile> = self
            .files
            .iter()
            .filter(|f| f.vars.get(name).is_some_and(|v| !v.is_empty()))
            .collect();
        let Some(first) = defining.first() else {
            return Ok(None);
        };
        if let Some(other) = defining.iter().find(|f| f.vars[name] != first.vars[name]) {
            return Err(Error::input(
                format!(
                    "{name} is set differently in {} and {}",
                    first.path.display(),
                    other.path.display()
                ),
                format!(
                    "keep {name} in one of them (Prisma refuses this too), or set it in the environment, which wins"
                ),
            ));
        }
        Ok(Some(Found {
            value: first.vars[name].clone(),
            file: Some(first.path.clone()),
        }))
    }

    /// Why a variable may be missing from the files: lines they could not parse.
    pub fn unparsed(&self) -> Option<String> {
        let parts: Vec<String> = self
            .files
            .iter()
            .filter(|f| !f.bad_lines.is_empty())
            .map(|f| {
                let lines: Vec<String> = f.bad_lines.iter().map(|n| n.to_string()).collect();
                format!("{} line {}", f.path.display(), lines.join(", "))
            })
            .collect();
        (!parts.is_empty()).then(|| format!("could not parse {}", parts.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if path.ends_with('/') {
                std::fs::create_dir_all(&p).unwrap();
            } else {
                std::fs::write(p, text).unwrap();
            }
        }
        dir
    }

    fn migrations(dir: &tempfile::TempDir) -> Result<(PathBuf, FolderSource)> {
        Project::read(dir.path())
            .migrations_dir()
            .map(|(p, s)| (p.strip_prefix(dir.path()).unwrap().to_owned(), s))
    }

    #[test]
    fn the_datasource_gives_url_and_direct_url_with_comments_left_out() {
        let ds = datasource(
            r#"
            // datasource old { url = env("OLD") }
            generator client { provider = "prisma-client-js" }
            datasource db {
              provider  = "postgresql" // the only one
              url       = env("DATABASE_URL")
              /// pgbouncer is in the way of migrations
              directUrl = env( "DIRECT_URL" )
              shadowDatabaseUrl = "postgresql://x@y/shadow"
            }
            model User { id Int @id }
            "#,
        )
        .unwrap();
        assert_eq!(ds.provider.as_deref(), Some("postgresql"));
        assert_eq!(ds.url, Some(UrlValue::Env("DATABASE_URL".into())));
        assert_eq!(ds.direct_url, Some(UrlValue::Env("DIRECT_URL".into())));
        let ds = datasource("datasource db {\n url = \"postgresql://a@b/c\"\n}").unwrap();
        assert_eq!(ds.url, Some(UrlValue::Literal("postgresql://a@b/c".into())));
        assert_eq!(ds.direct_url, None);
        assert_eq!(datasource("model datasourceish { id Int }"), None);
    }

    #[test]
    fn the_migrations_folder_is_found_as_prisma_finds_it() {
        // An empty ./migrations gives way to prisma/migrations.
        let dir = project(&[
            ("migrations/", ""),
            ("prisma/migrations/1_a/migration.sql", ""),
        ]);
        assert_eq!(
            migrations(&dir).unwrap(),
            (
                PathBuf::from("prisma/migrations"),
                FolderSource::PrismaFolder {
                    migrations_empty: true
                }
            )
        );
        // A schema in prisma/ wins over a full ./migrations.
        let dir = project(&[
            ("migrations/1_a/migration.sql", ""),
            ("prisma/schema.prisma", "datasource db {}"),
        ]);
        assert_eq!(
            migrations(&dir).unwrap(),
            (
                PathBuf::from("prisma/migrations"),
                FolderSource::PrismaSchema
            )
        );
        // ./migrations with migrations in it, and no schema: ours.
        let dir = project(&[
            ("migrations/1_a/migration.sql", ""),
            ("prisma/migrations/", ""),
        ]);
        assert_eq!(
            migrations(&dir).unwrap(),
            (PathBuf::from("migrations"), FolderSource::Default)
        );
        // package.json names the schema; the folder beside it.
        let dir = project(&[
            (
                "package.json",
                r#"{"name": "app", "prisma": {"schema": "db/schema.prisma"}}"#,
            ),
            ("db/schema.prisma", ""),
            ("prisma/schema.prisma", ""),
        ]);
        let (path, source) = migrations(&dir).unwrap();
        assert_eq!(path, PathBuf::from("db/migrations"));
        assert!(matches!(source, FolderSource::PackageJson { .. }));
        // package.json without a prisma key changes nothing.
        let dir = project(&[("package.json", r#"{"name": "app"}"#), ("migrations/", "")]);
        assert_eq!(migrations(&dir).unwrap().1, FolderSource::Default);
        let dir = project(&[("package.json", "{not json")]);
        assert!(
            migrations(&dir)
                .unwrap_err()
                .cause
                .contains("not valid JSON")
        );
    }

    #[test]
    fn prisma_config_ts_is_read_for_literals_and_anything_else_is_a_clear_error() {
        let dir = project(&[(
            "prisma.config.ts",
            r#"
            import "dotenv/config";
            import { defineConfig, env } from "prisma/config";
            // migrations: { path: "wrong" }
            export default defineConfig({
              schema: 'db/schema.prisma',
              migrations: {
                path: "db/migrations", /* kept with the schema */
                seed: `tsx db/seed.ts`,
              },
              datasource: { url: env("DIRECT_URL") },
            });
            "#,
        )]);
        let p = Project::read(dir.path());
        let (path, source) = p.migrations_dir().unwrap();
        assert_eq!(path, dir.path().join("db/migrations"));
        assert!(matches!(source, FolderSource::PrismaConfig { .. }));
        let urls = p.config_urls().unwrap().unwrap();
        assert_eq!(urls.url, Some(UrlValue::Env("DIRECT_URL".into())));
        assert_eq!(urls.direct, None);

        // Only a schema: the migrations beside it.
        let dir = project(&[(
            "prisma.config.ts",
            "const config: PrismaConfig = { schema: \"src/db/schema.prisma\" };\nexport default config;\n",
        )]);
        assert_eq!(
            migrations(&dir).unwrap().0,
            PathBuf::from("src/db/migrations")
        );

        for computed in [
            "export default defineConfig({ migrations: { path: path.join(__dirname, 'db') } })",
            "export default defineConfig({ migrations: { path: `${root}/migrations` } })",
            "export default defineConfig({ migrations })",
            "export default defineConfig({ schema: process.env.SCHEMA })",
            "export default defineConfig(makeConfig())",
        ] {
            let dir = project(&[("prisma.config.ts", computed)]);
            let e = migrations(&dir).unwrap_err();
            assert!(
                e.cause.contains("prisma.config.ts") && e.hint.contains("--migrations"),
                "{computed}: {} / {}",
                e.cause,
                e.hint
            );
        }
        // No migrations or schema in it: Prisma's defaults go on.
        let dir = project(&[
            (
                "prisma.config.ts",
                "export default defineConfig({ earlyAccess: true })",
            ),
            ("prisma/schema.prisma", ""),
        ]);
        assert_eq!(migrations(&dir).unwrap().1, FolderSource::PrismaSchema);
    }

    #[test]
    fn env_files_fill_in_what_the_process_lacks_and_may_not_disagree() {
        let dir = project(&[
            (
                ".env",
                "# local\nDATABASE_URL=\"postgresql://app:pw@localhost:6432/app?pgbouncer=true\"\nexport DIRECT_URL=postgresql://app:pw@localhost:5432/app\nBROKEN='unclosed\n",
            ),
            (
                "prisma/.env",
                "SHADOW=x\nDIRECT_URL=postgresql://other@h/db\n",
            ),
        ]);
        let p = Project::read(dir.path());
        let env = p.dotenv(Some(&dir.path().join("prisma"))).unwrap();
        assert_eq!(env.paths().len(), 2);
        let none = |_: &str| None;
        let found = env.lookup(&none, "DATABASE_URL").unwrap().unwrap();
        assert_eq!(found.file, Some(dir.path().join(".env")));
        assert!(found.value.ends_with("pgbouncer=true"));
        // The process environment wins.
        let real = |n: &str| (n == "DATABASE_URL").then(|| "postgresql://real@h/db".to_owned());
        let found = env.lookup(&real, "DATABASE_URL").unwrap().unwrap();
        assert_eq!(
            (found.value.as_str(), found.file),
            ("postgresql://real@h/db", None)
        );
        // Set differently in both files.
        let e = env.lookup(&none, "DIRECT_URL").unwrap_err();
        assert!(
            e.cause.contains("DIRECT_URL is set differently in"),
            "{}",
            e.cause
        );
        assert!(!e.cause.contains(":pw@"), "{}", e.cause);
        assert_eq!(
            env.lookup(&none, "SHADOW").unwrap().unwrap().file,
            Some(dir.path().join("prisma/.env"))
        );
        assert_eq!(env.lookup(&none, "MISSING").unwrap(), None);
    }

    #[test]
    fn a_fifo_in_place_of_a_project_file_is_refused_without_blocking() {
        let dir = project(&[]);
        nix::unistd::mkfifo(&dir.path().join(".env"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let e = Project::read(dir.path()).dotenv(None).unwrap_err();
        assert!(e.cause.contains("FIFO"), "{}", e.cause);
    }
}
