//! The notices already sent to peers (`ap_told`): the node's mail area remembers here which
//! peer was told what (a kind, and what it is about: a share's id, or nothing), so that a
//! restart does not send a notice again. Bounded: past [`MAX_TOLD`] rows the oldest go.
//!
//! Like [`crate::ops`], a façade over [`Store`]: it reaches into the crate root.

use rusqlite::params;

use crate::{Result, Store};

/// Rows kept; the oldest beyond it are forgotten (at worst a peer is told twice).
pub const MAX_TOLD: usize = 4096;

/// One notice sent: its kind, the peer (as text), what it was about (`""`: nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToldMark {
    pub kind: String,
    pub peer: String,
    pub subject: String,
}

impl Store {
    /// Every notice remembered, newest first.
    pub fn told_marks(&self) -> Result<Vec<ToldMark>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT kind, peer, subject FROM ap_told ORDER BY at DESC LIMIT ?1")?;
        let rows = st.query_map([MAX_TOLD as i64], |r| {
            Ok(ToldMark {
                kind: r.get(0)?,
                peer: r.get(1)?,
                subject: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Remembers a notice sent at `at` (unix ms); forgets the oldest past [`MAX_TOLD`].
    pub fn put_told(&mut self, mark: &ToldMark, at: u64) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO ap_told(kind, peer, subject, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(kind, peer, subject) DO UPDATE SET at = excluded.at",
            params![mark.kind, mark.peer, mark.subject, at as i64],
        )?;
        tx.execute(
            "DELETE FROM ap_told WHERE (kind, peer, subject) IN (SELECT kind, peer, subject
             FROM ap_told ORDER BY at DESC LIMIT -1 OFFSET ?1)",
            [MAX_TOLD as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a notice: the next occasion sends it again.
    pub fn remove_told(&mut self, mark: &ToldMark) -> Result<()> {
        self.conn.execute(
            "DELETE FROM ap_told WHERE kind = ?1 AND peer = ?2 AND subject = ?3",
            params![mark.kind, mark.peer, mark.subject],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(kind: &str, peer: &str, subject: &str) -> ToldMark {
        ToldMark {
            kind: kind.into(),
            peer: peer.into(),
            subject: subject.into(),
        }
    }

    #[test]
    fn put_remove_reopen_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let mut s = Store::open(&path, "me").unwrap();
            s.put_told(&mark("waiting", "bob", ""), 1).unwrap();
            s.put_told(&mark("shared", "bob", "s1"), 2).unwrap();
            s.put_told(&mark("shared", "bob", "s1"), 3).unwrap();
            s.put_told(&mark("waiting", "carol", ""), 4).unwrap();
            s.remove_told(&mark("waiting", "carol", "")).unwrap();
        }
        let mut s = Store::open(&path, "me").unwrap();
        assert_eq!(
            s.told_marks().unwrap(),
            vec![mark("shared", "bob", "s1"), mark("waiting", "bob", "")]
        );
        for i in 0..MAX_TOLD + 5 {
            s.put_told(&mark("waiting", &format!("p{i}"), ""), 10 + i as u64)
                .unwrap();
        }
        let marks = s.told_marks().unwrap();
        assert_eq!(marks.len(), MAX_TOLD);
        assert_eq!(marks[0], mark("waiting", &format!("p{}", MAX_TOLD + 4), ""));
        assert!(!marks.contains(&mark("waiting", "bob", "")), "oldest gone");
    }
}
