//! The folders the media catalog watches (`ap_watched`): the node's media area keeps here each
//! path `media.add` was asked to keep up to date, and whether its sub-folders count, so
//! watching resumes after a restart. This module does not watch anything itself.
//!
//! Like [`crate::grants`], a façade over [`Store`]: it reaches into the crate root. Each write
//! is one statement, so it is applied whole or not at all.

use rusqlite::params;

use crate::{Result, Store};

/// Paths kept at most: each is a user's choice (a music folder, a photo folder), and each
/// costs kernel watches for every folder below it.
pub const MAX_WATCHED: usize = 256;

/// One watched path as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedRow {
    /// Absolute and canonical: a folder or a single file.
    pub path: String,
    /// Sub-folders are watched too.
    pub recursive: bool,
    /// Unix ms.
    pub added_at: u64,
}

impl Store {
    /// Every watched path, in path order.
    pub fn watched(&self) -> Result<Vec<WatchedRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT path, recursive, added_at FROM ap_watched ORDER BY path LIMIT ?1",
        )?;
        let rows = st.query_map([MAX_WATCHED as i64], |r| {
            Ok(WatchedRow {
                path: r.get(0)?,
                recursive: r.get::<_, i64>(1)? != 0,
                added_at: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Adds a watched path or updates its `recursive`; false (nothing written) when
    /// [`MAX_WATCHED`] other paths are already kept.
    pub fn put_watched(&mut self, row: &WatchedRow) -> Result<bool> {
        // One statement: the bound is checked and the row written atomically.
        let written = self.conn.execute(
            "INSERT INTO ap_watched(path, recursive, added_at)
             SELECT ?1, ?2, ?3
             WHERE EXISTS (SELECT 1 FROM ap_watched WHERE path = ?1)
                OR (SELECT count(*) FROM ap_watched) < ?4
             ON CONFLICT(path) DO UPDATE SET recursive = excluded.recursive",
            params![
                row.path,
                row.recursive as i64,
                row.added_at as i64,
                MAX_WATCHED as i64
            ],
        )?;
        Ok(written > 0)
    }

    /// Stops keeping a path; true if it was kept.
    pub fn remove_watched(&mut self, path: &str) -> Result<bool> {
        let removed = self
            .conn
            .execute("DELETE FROM ap_watched WHERE path = ?1", [path])?;
        Ok(removed > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, recursive: bool) -> WatchedRow {
        WatchedRow {
            path: path.into(),
            recursive,
            added_at: 7,
        }
    }

    #[test]
    fn put_update_list_remove_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.db");
        {
            let mut s = Store::open(&file, "me").unwrap();
            assert!(s.put_watched(&row("/music", false)).unwrap());
            assert!(s.put_watched(&row("/photos", true)).unwrap());
            assert!(s.put_watched(&row("/music", true)).unwrap());
        }
        let mut s = Store::open(&file, "me").unwrap();
        assert_eq!(
            s.watched().unwrap(),
            vec![row("/music", true), row("/photos", true)]
        );
        assert!(s.remove_watched("/music").unwrap());
        assert!(!s.remove_watched("/music").unwrap());
        assert_eq!(s.watched().unwrap(), vec![row("/photos", true)]);
    }

    #[test]
    fn bounded_but_an_existing_path_may_still_change() {
        let mut s = Store::open_in_memory("me").unwrap();
        for i in 0..MAX_WATCHED {
            assert!(s.put_watched(&row(&format!("/f{i:03}"), false)).unwrap());
        }
        assert!(!s.put_watched(&row("/one-too-many", false)).unwrap());
        assert!(s.put_watched(&row("/f000", true)).unwrap());
        assert_eq!(s.watched().unwrap().len(), MAX_WATCHED);
        assert!(s.watched().unwrap()[0].recursive);
    }
}
