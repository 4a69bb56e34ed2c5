//! The apps area's state in the daemon: the grants by origin, kept in memory (checked on every
//! call and every event of an app session, so they must be cheap to read) and in the store
//! (`ap_app_grants`, [`allpeers_store::grants`]), loaded at start; and the per-origin rate
//! limit shared by all of an origin's sessions.
//!
//! A change is written to the store first, under the store's lock, and applied in memory only
//! once written, still under that lock: concurrent changes are applied in one order in both
//! places, and a failed write changes nothing.

use std::collections::BTreeMap;
use std::sync::Mutex;

use allpeers_model::api::apps::{AppEntry, AppPermissions, Scope};
use allpeers_store::grants::{GrantRow, MAX_GRANTS};
use allpeers_store::{Store, StoreError};

use super::rules;
use crate::daemon::limit::KeyedRateLimit;

/// Calls per second an origin's sessions may make together, and their burst.
pub const CALLS_PER_SECOND: u32 = 50;
pub const CALL_BURST: u32 = 200;
/// `last_used` is written to the store at most this often per origin (it is shown in
/// Settings; a write per call would cost more than the call).
const TOUCH_EVERY_MS: u64 = 60_000;

/// One origin's grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scopes: Vec<Scope>,
    pub granted_at_ms: u64,
    pub last_used_ms: Option<u64>,
    /// When `last_used_ms` was last written to the store.
    stored_use_ms: Option<u64>,
}

pub struct Apps {
    grants: Mutex<BTreeMap<String, Grant>>,
    pub limit: KeyedRateLimit<String>,
    /// Our `name@hub`, once the hub has told it (for `identity.get`).
    pub own_name: Mutex<Option<String>>,
}

fn entry(origin: &str, grant: &Grant) -> AppEntry {
    AppEntry {
        origin: origin.to_string(),
        scopes: grant.scopes.clone(),
        granted_at_ms: grant.granted_at_ms,
        last_used_ms: grant.last_used_ms,
    }
}

/// What an app with `scopes` is told of its permissions.
pub fn permissions(origin: &str, scopes: Vec<Scope>) -> AppPermissions {
    AppPermissions {
        origin: origin.to_string(),
        scopes,
        namespace: rules::namespace(origin),
    }
}

impl Apps {
    /// The grants as the store keeps them.
    pub fn load(store: &Store) -> Apps {
        let grants = match store.grants() {
            Ok(rows) => rows
                .into_iter()
                .map(|row| {
                    let grant = Grant {
                        scopes: rules::parse_scopes_text(&row.scopes),
                        granted_at_ms: row.granted_at,
                        last_used_ms: row.last_used,
                        stored_use_ms: row.last_used,
                    };
                    (row.origin, grant)
                })
                .collect(),
            Err(e) => {
                allpeers_log::skin!("apps: grants not loaded: {e}");
                BTreeMap::new()
            }
        };
        Apps {
            grants: Mutex::new(grants),
            limit: KeyedRateLimit::new(CALLS_PER_SECOND, CALL_BURST),
            own_name: Mutex::new(None),
        }
    }

    /// The scopes `origin` holds now.
    pub fn scopes(&self, origin: &str) -> Vec<Scope> {
        self.grants
            .lock()
            .expect("grants lock")
            .get(origin)
            .map(|g| g.scopes.clone())
            .unwrap_or_default()
    }

    /// Every grant.
    pub fn list(&self) -> Vec<AppEntry> {
        self.grants
            .lock()
            .expect("grants lock")
            .iter()
            .map(|(origin, g)| entry(origin, g))
            .collect()
    }

    /// Adds `added` to `origin`'s scopes (writing the store first). The entry after.
    pub fn grant(
        &self,
        store: &mut Store,
        origin: &str,
        added: &[Scope],
        now: u64,
    ) -> Result<AppEntry, StoreError> {
        let mut grants = self.grants.lock().expect("grants lock");
        let before = grants.get(origin).cloned();
        if before.is_none() && grants.len() >= MAX_GRANTS {
            return Err(StoreError::BadRequest(format!(
                "{MAX_GRANTS} apps hold grants already: revoke some first"
            )));
        }
        let grant = Grant {
            scopes: rules::with_scopes(
                before.as_ref().map_or(&[][..], |g| &g.scopes[..]),
                added,
            ),
            granted_at_ms: before
                .as_ref()
                .filter(|g| !g.scopes.is_empty())
                .map_or(now, |g| g.granted_at_ms),
            last_used_ms: before.as_ref().and_then(|g| g.last_used_ms),
            stored_use_ms: before.as_ref().and_then(|g| g.last_used_ms),
        };
        store.put_grant(&row(origin, &grant))?;
        let out = entry(origin, &grant);
        grants.insert(origin.to_string(), grant);
        Ok(out)
    }

    /// Removes `removed` from `origin`'s scopes, or (`None`) every scope and the origin. The
    /// entry after, `None` when nothing is left.
    pub fn revoke(
        &self,
        store: &mut Store,
        origin: &str,
        removed: Option<&[Scope]>,
    ) -> Result<Option<AppEntry>, StoreError> {
        let mut grants = self.grants.lock().expect("grants lock");
        let Some(before) = grants.get(origin).cloned() else {
            return Ok(None);
        };
        let left = removed.map_or(Vec::new(), |r| rules::without_scopes(&before.scopes, r));
        if left.is_empty() {
            store.remove_grant(origin)?;
            grants.remove(origin);
            return Ok(None);
        }
        let grant = Grant {
            scopes: left,
            ..before
        };
        store.put_grant(&row(origin, &grant))?;
        let out = entry(origin, &grant);
        grants.insert(origin.to_string(), grant);
        Ok(Some(out))
    }

    /// Notes a call by `origin`'s app at `now`; true when the store should be told (see
    /// [`TOUCH_EVERY_MS`]).
    pub fn used(&self, origin: &str, now: u64) -> bool {
        let mut grants = self.grants.lock().expect("grants lock");
        let Some(grant) = grants.get_mut(origin) else {
            return false;
        };
        grant.last_used_ms = Some(now);
        let due = grant
            .stored_use_ms
            .is_none_or(|at| now.saturating_sub(at) >= TOUCH_EVERY_MS);
        if due {
            grant.stored_use_ms = Some(now);
        }
        due
    }
}

fn row(origin: &str, grant: &Grant) -> GrantRow {
    GrantRow {
        origin: origin.to_string(),
        scopes: rules::scopes_text(&grant.scopes),
        granted_at: grant.granted_at_ms,
        last_used: grant.last_used_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Scope::*;

    #[test]
    fn grants_are_written_then_kept_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let a = "https://a.example";
        {
            let mut store = Store::open(&path, "me").unwrap();
            let apps = Apps::load(&store);
            assert!(apps.list().is_empty());
            let e = apps.grant(&mut store, a, &[Identity], 10).unwrap();
            assert_eq!((e.scopes, e.granted_at_ms), (vec![Identity], 10));
            let e = apps.grant(&mut store, a, &[Resources, Identity], 20).unwrap();
            assert_eq!((e.scopes, e.granted_at_ms), (vec![Identity, Resources], 10));
            assert!(apps.used(a, 30), "the first use is written");
            assert!(!apps.used(a, 40), "not again within a minute");
            assert!(apps.used(a, 30 + TOUCH_EVERY_MS));
            assert!(!apps.used("https://nobody.example", 50));
            let e = apps.revoke(&mut store, a, Some(&[Resources])).unwrap();
            assert_eq!(e.map(|e| e.scopes), Some(vec![Identity]));
            assert_eq!(apps.scopes(a), vec![Identity]);
            apps.grant(&mut store, "https://b.example", &[Shares], 60)
                .unwrap();
            assert_eq!(apps.revoke(&mut store, "https://b.example", None).unwrap(), None);
            assert_eq!(apps.revoke(&mut store, "https://c.example", None).unwrap(), None);
        }
        let store = Store::open(&path, "me").unwrap();
        let apps = Apps::load(&store);
        let list = apps.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].origin, a);
        assert_eq!(list[0].scopes, vec![Identity]);
        assert_eq!(list[0].granted_at_ms, 10);
        assert_eq!(apps.scopes("https://b.example"), vec![]);
    }

    #[test]
    fn revoking_every_scope_by_name_forgets_the_origin() {
        let mut store = Store::open_in_memory("me").unwrap();
        let apps = Apps::load(&store);
        apps.grant(&mut store, "https://a.example", &[Identity], 1)
            .unwrap();
        let left = apps
            .revoke(&mut store, "https://a.example", Some(&[Identity]))
            .unwrap();
        assert_eq!(left, None);
        assert!(apps.list().is_empty());
        assert!(store.grants().unwrap().is_empty());
    }
}
