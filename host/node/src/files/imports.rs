//! Imports: a file's bytes brought into the node by a client that has no path to give (a file dropped on the
//! browser's sidebar), in order and in bounded chunks (`files.import_start` / `_write` / `_cancel`).
//!
//! The bytes go to a hidden `.allpeers-import-<n>.part` file in the imports folder (`<downloads>/Imported`); the
//! last chunk gives it its final name there, never replacing a file (`name (1).ext`). At most
//! [`MAX_OPEN_IMPORTS`] are open; one left idle for [`IDLE`] is dropped (its partial file deleted) when the next
//! import starts.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allpeers_model::api::files::{
    self as api, ImportStatus, MAX_IMPORT_BYTES, MAX_IMPORT_CHUNK, MAX_OPEN_IMPORTS,
};
use allpeers_model::api::{ErrorCode, RpcError};
use base64::Engine as _;

use crate::daemon::rpc::{app_error, internal};

/// An import with no chunk for this long is dropped at the next start.
pub const IDLE: Duration = Duration::from_secs(10 * 60);
/// Where imports go inside the download directory.
pub const FOLDER: &str = "Imported";

struct Import {
    file: Option<File>,
    part: PathBuf,
    dir: PathBuf,
    name: String,
    size: u64,
    received: u64,
    touched: Instant,
}

impl Import {
    fn status(&self, id: u64, path: Option<&Path>) -> ImportStatus {
        ImportStatus {
            import: id,
            received: self.received,
            size: self.size,
            path: path.map(|p| p.to_string_lossy().into_owned()),
        }
    }

    fn abandon(&mut self) {
        self.file = None;
        let _ = std::fs::remove_file(&self.part);
    }
}

#[derive(Default)]
struct Inner {
    next: u64,
    open: HashMap<u64, Arc<Mutex<Import>>>,
}

/// The open imports of the daemon.
#[derive(Default)]
pub struct Imports {
    inner: Mutex<Inner>,
}

fn invalid(message: impl Into<String>) -> RpcError {
    RpcError::new(ErrorCode::InvalidParams, message.into())
}

fn unknown(id: u64) -> RpcError {
    app_error(
        ErrorCode::ImportUnknown.code(),
        format!("no open import {id}"),
    )
}

impl Imports {
    /// Opens an import of `size` bytes named `name` into `dir` (created if missing). Blocking file I/O: call it on
    /// the blocking pool.
    pub fn start(&self, dir: &Path, name: &str, size: u64) -> Result<ImportStatus, RpcError> {
        if let Some(problem) = api::import_name_problem(name) {
            return Err(invalid(format!("name: {problem}")));
        }
        if size > MAX_IMPORT_BYTES {
            return Err(invalid("size: at most 4 GiB"));
        }
        let (id, expired) = {
            let mut inner = self.inner.lock().expect("imports lock");
            let expired: Vec<_> = inner
                .open
                .iter()
                .filter(|(_, i)| i.try_lock().is_ok_and(|i| i.touched.elapsed() >= IDLE))
                .map(|(id, _)| *id)
                .collect();
            let expired: Vec<_> = expired
                .into_iter()
                .filter_map(|id| inner.open.remove(&id))
                .collect();
            if inner.open.len() >= MAX_OPEN_IMPORTS {
                return Err(app_error(
                    ErrorCode::ImportBusy.code(),
                    format!("{MAX_OPEN_IMPORTS} imports are open already"),
                ));
            }
            inner.next += 1;
            (inner.next, expired)
        };
        for import in expired {
            import.lock().expect("import lock").abandon();
        }
        std::fs::create_dir_all(dir).map_err(internal)?;
        let part = dir.join(format!(".allpeers-import-{id}.part"));
        let file = File::create(&part).map_err(internal)?;
        let mut import = Import {
            file: Some(file),
            part,
            dir: dir.to_path_buf(),
            name: name.to_string(),
            size,
            received: 0,
            touched: Instant::now(),
        };
        if size == 0 {
            let path = finish(&mut import)?;
            return Ok(import.status(id, Some(&path)));
        }
        let status = import.status(id, None);
        self.inner
            .lock()
            .expect("imports lock")
            .open
            .insert(id, Arc::new(Mutex::new(import)));
        allpeers_log::bone!(id, name, size, "files: an import started");
        Ok(status)
    }

    /// Writes the next chunk of import `id`; the last one gives the file its final name. Blocking file I/O.
    pub fn write(&self, id: u64, offset: u64, data: &str) -> Result<ImportStatus, RpcError> {
        // Base64 of MAX_IMPORT_CHUNK bytes, padding included: anything longer is refused before decoding.
        if data.len() > MAX_IMPORT_CHUNK.div_ceil(3) * 4 {
            return Err(invalid("data: at most 768 KiB a chunk"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| invalid(format!("data: not base64: {e}")))?;
        let import = self
            .inner
            .lock()
            .expect("imports lock")
            .open
            .get(&id)
            .cloned()
            .ok_or_else(|| unknown(id))?;
        let mut import = import.lock().expect("import lock");
        if offset != import.received {
            return Err(invalid(format!(
                "offset: expected {} (the bytes received so far)",
                import.received
            )));
        }
        if bytes.len() as u64 > import.size - import.received {
            return Err(invalid(format!(
                "data: {} bytes past the announced size {}",
                bytes.len() as u64 - (import.size - import.received),
                import.size
            )));
        }
        let written = match import.file.as_mut() {
            Some(file) => file.write_all(&bytes),
            None => return Err(unknown(id)),
        };
        if let Err(error) = written {
            import.abandon();
            self.forget(id);
            return Err(internal(format!("could not write the import: {error}")));
        }
        import.received += bytes.len() as u64;
        import.touched = Instant::now();
        if import.received < import.size {
            return Ok(import.status(id, None));
        }
        let done = finish(&mut import);
        self.forget(id);
        let path = done?;
        allpeers_log::flesh!(id, path = %path.display(), "files: an import finished");
        Ok(import.status(id, Some(&path)))
    }

    /// Abandons import `id` (its partial file deleted); `None` if there was none.
    pub fn cancel(&self, id: u64) -> Option<ImportStatus> {
        let import = self.inner.lock().expect("imports lock").open.remove(&id)?;
        let mut import = import.lock().expect("import lock");
        import.abandon();
        Some(import.status(id, None))
    }

    fn forget(&self, id: u64) {
        self.inner.lock().expect("imports lock").open.remove(&id);
    }
}

/// Closes the partial file and moves it to a free name in its folder: `name`, else `name (1).ext`, ….
fn finish(import: &mut Import) -> Result<PathBuf, RpcError> {
    if let Some(file) = import.file.take()
        && let Err(error) = file.sync_all()
    {
        import.abandon();
        return Err(internal(format!("could not write the import: {error}")));
    }
    let result = claim_free_name(&import.dir, &import.name).and_then(|path| {
        // The placeholder made by `claim_free_name` is replaced atomically.
        std::fs::rename(&import.part, &path).map(|()| path)
    });
    result.map_err(|error| {
        import.abandon();
        internal(format!("could not name the import: {error}"))
    })
}

/// Reserves `dir/name` or the first free `stem (n).ext` by creating it empty (`create_new`: never an existing
/// file), so two imports of the same name cannot take the same path.
fn claim_free_name(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (name, String::new()),
    };
    for n in 0..10_000u32 {
        let candidate = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(_) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name left"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn an_import_in_chunks_gets_its_name_and_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let imports = Imports::default();
        std::fs::write(dir.path().join("a.jpg"), b"already here").unwrap();
        let s = imports.start(dir.path(), "a.jpg", 5).unwrap();
        assert_eq!((s.received, s.path.clone()), (0, None));
        let s1 = imports.write(s.import, 0, &b64(b"abc")).unwrap();
        assert_eq!((s1.received, s1.path), (3, None));
        // Out of order, or past the size: refused, nothing written.
        assert!(imports.write(s.import, 0, &b64(b"de")).is_err());
        assert!(imports.write(s.import, 3, &b64(b"def")).is_err());
        let done = imports.write(s.import, 3, &b64(b"de")).unwrap();
        let path = PathBuf::from(done.path.unwrap());
        assert_eq!(path, dir.path().join("a (1).jpg"));
        assert_eq!(std::fs::read(&path).unwrap(), b"abcde");
        assert_eq!(
            std::fs::read(dir.path().join("a.jpg")).unwrap(),
            b"already here"
        );
        // Finished: no longer open; no partial file left.
        let err = imports.write(s.import, 5, "").unwrap_err();
        assert_eq!(err.code, ErrorCode::ImportUnknown.code());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".part"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn bad_names_sizes_and_chunks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let imports = Imports::default();
        for name in ["../x", ".bashrc", "a/b", ""] {
            let e = imports.start(dir.path(), name, 1).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams.code(), "{name}");
        }
        assert!(
            imports
                .start(dir.path(), "big", MAX_IMPORT_BYTES + 1)
                .is_err()
        );
        let s = imports.start(dir.path(), "x.bin", 10 << 20).unwrap();
        let too_big = b64(&vec![0u8; MAX_IMPORT_CHUNK + 1]);
        assert!(imports.write(s.import, 0, &too_big).is_err());
        assert!(imports.write(s.import, 0, "not base64!").is_err());
        let full = b64(&vec![0u8; MAX_IMPORT_CHUNK]);
        assert_eq!(
            imports.write(s.import, 0, &full).unwrap().received,
            MAX_IMPORT_CHUNK as u64
        );
        // Cancelled: the partial file goes.
        assert!(imports.cancel(s.import).is_some());
        assert!(imports.cancel(s.import).is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_file_is_done_at_once_and_the_open_imports_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let imports = Imports::default();
        let s = imports.start(dir.path(), "empty.txt", 0).unwrap();
        assert_eq!(std::fs::read(s.path.unwrap()).unwrap(), b"");
        for i in 0..MAX_OPEN_IMPORTS {
            imports.start(dir.path(), &format!("f{i}"), 1).unwrap();
        }
        let e = imports.start(dir.path(), "one more", 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::ImportBusy.code());
    }
}
