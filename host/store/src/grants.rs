//! The scopes granted to web apps (`ap_app_grants`): the node's apps area keeps here, per
//! origin, the scopes the user granted, when, and when the app was last used, so grants
//! survive restarts. Scopes are the API's wire names, comma-separated; this module does not
//! interpret them.
//!
//! Like [`crate::told`], a façade over [`Store`]: it reaches into the crate root. Each write is
//! one statement, so it is applied whole or not at all.

use rusqlite::{OptionalExtension, params};

use crate::{Result, Store};

/// Origins kept at most: a grant is one user decision each, so this is never reached in
/// practice; it bounds the table against a runaway caller.
pub const MAX_GRANTS: usize = 4096;

/// One origin's grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub origin: String,
    /// Wire names, comma-separated.
    pub scopes: String,
    /// Unix ms.
    pub granted_at: u64,
    /// Unix ms.
    pub last_used: Option<u64>,
}

impl Store {
    /// Every grant, by origin.
    pub fn grants(&self) -> Result<Vec<GrantRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT origin, scopes, granted_at, last_used FROM ap_app_grants ORDER BY origin LIMIT ?1",
        )?;
        let rows = st.query_map([MAX_GRANTS as i64], |r| {
            Ok(GrantRow {
                origin: r.get(0)?,
                scopes: r.get(1)?,
                granted_at: r.get::<_, i64>(2)?.max(0) as u64,
                last_used: r.get::<_, Option<i64>>(3)?.map(|t| t.max(0) as u64),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Writes an origin's grant whole (inserted or replaced).
    pub fn put_grant(&mut self, row: &GrantRow) -> Result<()> {
        self.conn.execute(
            "INSERT INTO ap_app_grants(origin, scopes, granted_at, last_used) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(origin) DO UPDATE SET scopes = excluded.scopes,
             granted_at = excluded.granted_at, last_used = excluded.last_used",
            params![
                row.origin,
                row.scopes,
                row.granted_at as i64,
                row.last_used.map(|t| t as i64)
            ],
        )?;
        Ok(())
    }

    /// Forgets an origin's grant; true if there was one.
    pub fn remove_grant(&mut self, origin: &str) -> Result<bool> {
        let removed = self
            .conn
            .execute("DELETE FROM ap_app_grants WHERE origin = ?1", [origin])?;
        Ok(removed > 0)
    }

    /// Records when an origin's app was last used (nothing if it has no grant).
    pub fn touch_grant(&mut self, origin: &str, at: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE ap_app_grants SET last_used = ?2 WHERE origin = ?1",
            params![origin, at as i64],
        )?;
        Ok(())
    }

    /// One origin's grant.
    pub fn grant(&self, origin: &str) -> Result<Option<GrantRow>> {
        let mut st = self.conn.prepare_cached(
            "SELECT origin, scopes, granted_at, last_used FROM ap_app_grants WHERE origin = ?1",
        )?;
        Ok(st
            .query_row([origin], |r| {
                Ok(GrantRow {
                    origin: r.get(0)?,
                    scopes: r.get(1)?,
                    granted_at: r.get::<_, i64>(2)?.max(0) as u64,
                    last_used: r.get::<_, Option<i64>>(3)?.map(|t| t.max(0) as u64),
                })
            })
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(origin: &str, scopes: &str, at: u64) -> GrantRow {
        GrantRow {
            origin: origin.into(),
            scopes: scopes.into(),
            granted_at: at,
            last_used: None,
        }
    }

    #[test]
    fn put_touch_remove_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let mut s = Store::open(&path, "me").unwrap();
            s.put_grant(&row("https://a.example", "identity", 1))
                .unwrap();
            s.put_grant(&row("https://b.example", "resources", 2))
                .unwrap();
            s.put_grant(&row("https://a.example", "identity,shares", 3))
                .unwrap();
            s.touch_grant("https://a.example", 9).unwrap();
            s.touch_grant("https://nobody.example", 9).unwrap();
            assert!(s.remove_grant("https://b.example").unwrap());
            assert!(!s.remove_grant("https://b.example").unwrap());
        }
        let s = Store::open(&path, "me").unwrap();
        let mut expected = row("https://a.example", "identity,shares", 3);
        expected.last_used = Some(9);
        assert_eq!(s.grants().unwrap(), vec![expected.clone()]);
        assert_eq!(s.grant("https://a.example").unwrap(), Some(expected));
        assert_eq!(s.grant("https://nobody.example").unwrap(), None);
    }
}
