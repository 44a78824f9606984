//! Reading the files pgdeck is pointed at without being led astray: only regular files, never
//! a FIFO, socket or device (opening a FIFO would block until someone writes to it), and, where
//! a folder is named, only files whose real path stays inside it (a symlinked `migration.sql`
//! must not put a credentials file into stderr and the ledger's logs).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a file was not read.
#[derive(Debug)]
pub enum Refused {
    NotFound,
    /// A FIFO, socket, device or folder: what it is.
    NotRegular(&'static str),
    /// Its real path (after symlinks) leaves the folder it must stay in.
    Outside {
        real: PathBuf,
        folder: PathBuf,
    },
    /// Something is already at a path that was to be created: what it is.
    Exists(&'static str),
    Io(std::io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotFound => write!(f, "no such file"),
            Refused::NotRegular(what) => write!(f, "it is {what}, not a regular file"),
            Refused::Outside { real, folder } => write!(
                f,
                "it is a link to {}, outside {}",
                real.display(),
                folder.display()
            ),
            Refused::Exists(what) => write!(f, "{what} is already there"),
            Refused::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Refused {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Refused::NotFound)
    }

    fn of(e: std::io::Error) -> Refused {
        if e.kind() == std::io::ErrorKind::NotFound {
            Refused::NotFound
        } else {
            Refused::Io(e)
        }
    }
}

fn kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Reads a regular file, following symlinks; when `inside` is given, only if the file's real
/// path lies inside that folder's real path. The file is opened without blocking and checked
/// again once open, so a FIFO swapped in meanwhile is refused, not waited on.
pub fn read(path: &Path, inside: Option<&Path>) -> Result<Vec<u8>, Refused> {
    let real = std::fs::canonicalize(path).map_err(Refused::of)?;
    if let Some(folder) = inside {
        let folder = std::fs::canonicalize(folder).map_err(Refused::of)?;
        if !real.starts_with(&folder) {
            return Err(Refused::Outside { real, folder });
        }
    }
    let meta = std::fs::metadata(&real).map_err(Refused::of)?;
    if !meta.is_file() {
        return Err(Refused::NotRegular(kind(meta.file_type())));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(&real)
        .map_err(Refused::of)?;
    let opened = file.metadata().map_err(Refused::Io)?;
    if !opened.is_file() {
        return Err(Refused::NotRegular(kind(opened.file_type())));
    }
    let mut bytes = Vec::with_capacity(opened.len() as usize);
    file.read_to_end(&mut bytes).map_err(Refused::Io)?;
    Ok(bytes)
}

/// Opens a regular file for reading (following symlinks), without blocking: a FIFO or device
/// in its place is refused, also one swapped in after a check elsewhere.
pub fn open(path: &Path) -> Result<std::fs::File, Refused> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(Refused::of)?;
    let meta = file.metadata().map_err(Refused::Io)?;
    if !meta.is_file() {
        return Err(Refused::NotRegular(kind(meta.file_type())));
    }
    Ok(file)
}

/// Refuses to write to `path` when something other than a regular file is there (a FIFO would
/// block the write, a device would take it); a missing file is fine.
pub fn writable(path: &Path) -> Result<(), Refused> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) => Err(Refused::NotRegular(kind(m.file_type()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Refused::Io(e)),
    }
}

/// Creates `path` holding `bytes`, only if nothing is at the path: `O_CREAT | O_EXCL` never opens
/// what exists and never follows a symbolic link (a dangling one included), so an existing file,
/// a link or a FIFO there is refused and left as it was. The file is fsynced before it counts as
/// written; one that could not be written whole is removed.
pub fn create_new(path: &Path, bytes: &[u8]) -> Result<(), Refused> {
    use std::io::Write as _;
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Refused::Exists(match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => "a symbolic link",
                Ok(m) if m.is_file() => "a file",
                Ok(m) => kind(m.file_type()),
                Err(_) => "something",
            }));
        }
        Err(e) => return Err(Refused::of(e)),
    };
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        let _ = std::fs::remove_file(path);
        return Err(Refused::Io(e));
    }
    Ok(())
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, inside: Option<&Path>) -> Result<String, Refused> {
    String::from_utf8(read(path, inside)?).map_err(|e| {
        Refused::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not valid UTF-8 (bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        ))
    })
}

/// Whether `path` is a regular file (following symlinks), or why not; `Ok(false)` when missing.
pub fn regular(path: &Path) -> Result<bool, Refused> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(true),
        Ok(m) => Err(Refused::NotRegular(kind(m.file_type()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Refused::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_are_refused_without_blocking_and_links_may_not_leave_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("migrations");
        std::fs::create_dir(&folder).unwrap();
        let outside = dir.path().join("secret.txt");
        std::fs::write(&outside, "password=hunter2").unwrap();
        let inside = folder.join("ok.sql");
        std::fs::write(&inside, "SELECT 1;").unwrap();
        let fifo = folder.join("pipe.sql");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let link_out = folder.join("leak.sql");
        std::os::unix::fs::symlink(&outside, &link_out).unwrap();
        let link_in = folder.join("alias.sql");
        std::os::unix::fs::symlink(&inside, &link_in).unwrap();

        assert_eq!(read(&inside, Some(&folder)).unwrap(), b"SELECT 1;");
        assert_eq!(read(&link_in, Some(&folder)).unwrap(), b"SELECT 1;");
        assert!(matches!(
            read(&fifo, Some(&folder)),
            Err(Refused::NotRegular(k)) if k.contains("FIFO")
        ));
        assert!(matches!(
            read(&link_out, Some(&folder)),
            Err(Refused::Outside { .. })
        ));
        assert!(read(&link_out, None).is_ok());
        assert!(
            read(&folder.join("missing.sql"), None)
                .unwrap_err()
                .is_not_found()
        );
        assert!(matches!(
            read(&folder, None),
            Err(Refused::NotRegular("a folder"))
        ));
        assert!(matches!(regular(&fifo), Err(Refused::NotRegular(_))));
        assert!(!regular(&folder.join("missing")).unwrap());
    }

    #[test]
    fn create_new_writes_only_where_nothing_is_and_never_through_a_link_or_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.toml");
        create_new(&new, b"a = 1\n").unwrap();
        assert_eq!(std::fs::read(&new).unwrap(), b"a = 1\n");
        assert!(matches!(
            create_new(&new, b"b = 2\n"),
            Err(Refused::Exists("a file"))
        ));
        assert_eq!(std::fs::read(&new).unwrap(), b"a = 1\n");

        let target = dir.path().join("elsewhere.toml");
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            create_new(&link, b"x"),
            Err(Refused::Exists("a symbolic link"))
        ));
        assert!(!target.exists(), "the dangling link's target was created");

        let fifo = dir.path().join("pipe.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            create_new(&fifo, b"x"),
            Err(Refused::Exists(k)) if k.contains("FIFO")
        ));
        assert!(
            create_new(&dir.path().join("no/such/folder.toml"), b"x")
                .unwrap_err()
                .is_not_found()
        );
    }
}
