//! Replicated shares in the store: [`allpeers_replica::store::OpStore`] for [`Store`], and the
//! records of the shares offered to us or held (`ap_shares`).
//!
//! A replica's changes are persisted in ONE transaction with the resources they materialise:
//! the ops (`ap_ops`, wire form, never rewritten), the per-author seq marks (`ap_op_seqs`),
//! then each changed resource written through the same paths as a local write (create,
//! update, delete, list insert/remove), so listeners and the change log see a replicated change
//! exactly as a local one. A failure rolls everything back: never half-applied.
//!
//! A resource whose replicated view does not fit its type here (a value breaking the schema,
//! a type this node does not know) is not materialised; its ops are kept (they may become
//! valid when the schema arrives, and peers still need them), and the resource keeps its last
//! good local version. Local metadata is never touched.
//!
//! Like [`crate::api`], a façade over [`Store`]: it reaches into the crate root.

use std::collections::{BTreeMap, BTreeSet};

use allpeers_model::id::PeerId;
use allpeers_model::resource::{Child, Resource, Value};
use allpeers_model::schema::app::check_carried;
use allpeers_replica::state::{Parts, View};
use allpeers_replica::store::{OpStore, Stored};
use allpeers_replica::{Action, Changes, Replica, ShareId};
use rusqlite::params;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::list::LIST_TYPE;
use crate::write::{self, Target};
use crate::{Result, Store, StoreError};

/// A share as this node records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    pub share: ShareId,
    /// The shared root resource's id.
    pub root: String,
    /// Who offered it to us (ourselves for our own shares).
    pub peer: String,
    /// `offered` (waiting for the user) or `accepted` (held and synced).
    pub state: String,
    /// The root's title when offered, for the user to decide.
    pub title: String,
}

/// What to do with one resource of a commit, decided before the transaction.
enum Plan {
    Create(Resource),
    Update {
        rid: i64,
        old: Box<Resource>,
        new: Box<Resource>,
    },
    Delete {
        rid: i64,
        id: String,
        type_name: String,
    },
}

impl Store {
    /// Every share record, offered and accepted.
    pub fn share_records(&self) -> Result<Vec<ShareRecord>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT share, root, peer, state, title FROM ap_shares")?;
        let rows = st.query_map([], |r| {
            let share: Vec<u8> = r.get(0)?;
            Ok((share, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (share, root, peer, state, title) = row?;
            out.push(ShareRecord {
                share: share_id(&share)?,
                root,
                peer,
                state,
                title,
            });
        }
        Ok(out)
    }

    /// Records (or replaces) a share.
    pub fn put_share_record(&mut self, record: &ShareRecord) -> Result<()> {
        self.conn.execute(
            "INSERT INTO ap_shares(share, root, peer, state, title) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(share) DO UPDATE SET root = excluded.root, peer = excluded.peer,
             state = excluded.state, title = excluded.title",
            params![
                &record.share.0[..],
                record.root,
                record.peer,
                record.state,
                record.title
            ],
        )?;
        Ok(())
    }

    /// Forgets a share: its record, ops and seq marks (the resources stay, as local copies).
    pub fn forget_share(&mut self, share: &ShareId) -> Result<()> {
        let tx = self.conn.transaction()?;
        for table in ["ap_shares", "ap_ops", "ap_op_seqs"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE share = ?1"),
                [&share.0[..]],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The resource `id` as [`Store::update`] would write it with `patch`, checked (defaults,
    /// adapters, schema), without writing: a shared resource's edit becomes ops first.
    pub fn check_update(
        &self,
        id: &str,
        patch: &allpeers_model::resource::Patch,
    ) -> Result<(Resource, Resource)> {
        let (rid, type_name) = self.reader().existing(id)?;
        let old = self.reader().load(rid)?;
        if patch.properties.contains_key("id") || patch.properties.contains_key("type") {
            return Err(StoreError::BadRequest("id and type cannot change".into()));
        }
        let mut r = old.clone();
        r.apply(patch);
        if patch.touches_content() && !patch.properties.contains_key("modified") {
            r.properties.insert(
                "modified".into(),
                allpeers_model::resource::Value::Date((self.clock)()),
            );
        }
        let adapters = self.adapters.chain(&self.reg, &type_name);
        Ok((old, write::check(&self.reg, &adapters, r)?))
    }

    /// Decides how the replica's view of `id` is written here, `existing` where it is stored
    /// (read for many ids at once); `None`: nothing to do (no change, or a view that does not
    /// fit its type, logged).
    fn plan(
        &self,
        id: &str,
        view: Option<View<'_>>,
        existing: Option<&(i64, String)>,
    ) -> Result<Option<Plan>> {
        let Some(view) = view else { return Ok(None) };
        let parts = match view {
            View::Deleted => {
                return Ok(existing.map(|(rid, type_name)| Plan::Delete {
                    rid: *rid,
                    id: id.to_owned(),
                    type_name: type_name.clone(),
                }));
            }
            View::Live(parts) => parts,
        };
        let mut r = match resource_of(id, &parts) {
            Ok(r) => r,
            Err(why) => {
                allpeers_log::bone!(resource = id, "replicated view not materialised: {why}");
                return Ok(None);
            }
        };
        let adapters = self.adapters.chain(&self.reg, &r.type_name);
        match existing {
            Some((rid, _)) => {
                let rid = *rid;
                let old = self.reader().load(rid)?;
                // Local metadata is this node's own.
                r.meta = old.meta.clone();
                match write::check(&self.reg, &adapters, r) {
                    Ok(new) if new == old => Ok(None),
                    Ok(new) if new.type_name != old.type_name => {
                        allpeers_log::bone!(resource = id, "replicated view changes the type");
                        Ok(None)
                    }
                    Ok(new) => Ok(Some(Plan::Update {
                        rid,
                        old: Box::new(old),
                        new: Box::new(new),
                    })),
                    Err(e) => {
                        allpeers_log::bone!(resource = id, "replicated view refused: {e}");
                        Ok(None)
                    }
                }
            }
            None => {
                match write::prepare_new(&self.reg, &adapters, r, (self.clock)(), &self.author) {
                    Ok(new) => Ok(Some(Plan::Create(new))),
                    Err(e) => {
                        allpeers_log::bone!(resource = id, "replicated view refused: {e}");
                        Ok(None)
                    }
                }
            }
        }
    }
}

/// A replica's live resource as a resource (properties set to `null` are absent), read from
/// the state's own values: what deserialising its JSON view gave, without building the view.
fn resource_of(id: &str, parts: &Parts<'_>) -> std::result::Result<Resource, String> {
    let mut r = Resource::new(parts.kind()).with_id(id);
    for (name, value) in parts.properties().filter(|(_, v)| !v.is_null()) {
        let value = Value::deserialize(value).map_err(|e| format!("property {name}: {e}"))?;
        r.properties.insert(name.to_owned(), value);
    }
    for (slot, child) in parts.children() {
        let child = Child::deserialize(child).map_err(|e| format!("child of {slot}: {e}"))?;
        r.children.entry(slot.to_owned()).or_default().push(child);
    }
    Ok(r)
}

fn share_id(bytes: &[u8]) -> Result<ShareId> {
    bytes
        .try_into()
        .map(allpeers_replica::OpId)
        .map_err(|_| StoreError::Corrupt("a share id is not 32 bytes".into()))
}

impl OpStore for Store {
    type Error = StoreError;

    fn load(&self, share: &ShareId) -> Result<Stored> {
        let ops = self
            .conn
            .prepare_cached("SELECT wire FROM ap_ops WHERE share = ?1")?
            .query_map([&share.0[..]], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut author_seqs = BTreeMap::new();
        let mut st = self
            .conn
            .prepare_cached("SELECT peer, seq FROM ap_op_seqs WHERE share = ?1")?;
        let rows = st.query_map([&share.0[..]], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (peer, seq) = row?;
            let peer: PeerId = peer
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("bad peer id in ap_op_seqs: {peer}")))?;
            author_seqs.insert(peer, u64::try_from(seq).unwrap_or(0));
        }
        Ok(Stored { ops, author_seqs })
    }

    fn commit(&mut self, share: &ShareId, changes: &Changes, replica: &Replica) -> Result<()> {
        let carried = self.carried_schemas(share, changes, replica);
        if carried.files.is_empty() {
            return self.commit_with(share, changes, replica, &carried);
        }
        // The resources are checked against the registry with the carried files, and written
        // in the transaction that registers them: the registry is this one only if it commits.
        let before = std::mem::replace(&mut self.reg, carried.registry.clone());
        let done = self.commit_with(share, changes, replica, &carried);
        match done {
            Ok(()) => {
                self.insert_sql.clear();
                allpeers_log::flesh!(%share, files = ?carried.files.iter().map(|(f, _)| f).collect::<Vec<_>>(), "schemas carried by a share registered");
            }
            Err(_) => self.reg = before,
        }
        done
    }
}

/// Schema files a commit registers: those the share carries whose text changed, as
/// [`check_carried`] and the registry accept them.
struct Carried {
    files: Vec<(String, String)>,
    /// The registry with them.
    registry: allpeers_model::schema::Registry,
    /// The types they declare: resources of these types are written again (they may have
    /// arrived before their schema, and were not written then).
    types: BTreeSet<String>,
}

impl Store {
    fn carried_schemas(&self, share: &ShareId, changes: &Changes, replica: &Replica) -> Carried {
        let mut carried = Carried {
            files: Vec::new(),
            registry: self.reg.clone(),
            types: BTreeSet::new(),
        };
        if changes.schemas.is_empty() {
            return carried;
        }
        let root_type = replica
            .live_op(&replica.share())
            .and_then(|genesis| match &genesis.body().action {
                Action::Create { kind, .. } => Some(kind.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for file in &changes.schemas {
            let Some(text) = replica.state().schema(file) else {
                continue;
            };
            let known = self.reg.files().iter().any(|(f, t)| f == file && t == text);
            if known {
                continue;
            }
            let registered = check_carried(&root_type, file, text).and_then(|_| {
                carried
                    .registry
                    .register(file, text)
                    .map_err(|e| e.to_string())
            });
            match registered {
                Ok(names) => {
                    carried.types.extend(names);
                    carried.files.push((file.clone(), text.to_owned()));
                }
                Err(why) => {
                    allpeers_log::flesh!(%share, file = file.as_str(), "schema carried by the share refused: {why}")
                }
            }
        }
        carried
    }

    fn commit_with(
        &mut self,
        share: &ShareId,
        changes: &Changes,
        replica: &Replica,
        carried: &Carried,
    ) -> Result<()> {
        // Decided before the transaction: reads and checks only.
        let mut resources = changes.resources.clone();
        if !carried.types.is_empty() {
            let state = replica.state();
            resources.extend(
                state
                    .resource_ids()
                    .filter(|id| state.kind_of(id).is_some_and(|t| carried.types.contains(t)))
                    .map(str::to_owned),
            );
        }
        // Lists of the share whose items may have changed: those touched, and those holding a
        // touched resource (an item created after its add). Only those are read back, in the
        // replica's order (positions and arrival keys): a commit costs what it changed plus
        // the lists it touched, not every list and view of the share.
        let state = replica.state();
        let mut touched: BTreeSet<&str> = resources
            .iter()
            .map(String::as_str)
            .filter(|id| {
                state
                    .kind_of(id)
                    .is_some_and(|t| self.reg.is_a(t, LIST_TYPE))
            })
            .collect();
        touched.extend(state.lists_holding(&resources).filter(|id| {
            state
                .kind_of(id)
                .is_some_and(|t| self.reg.is_a(t, LIST_TYPE))
        }));
        // How each list was last arranged here, if it is known: then only the items after the
        // run of them still in the replica's order are looked up and arranged (an initial
        // sync's commits change a list near its end). Taken out of the store (`begin` clears
        // it) and put back once the transaction committed.
        let mut arranged = std::mem::take(&mut self.arranged);
        arranged.check(&self.conn)?;
        let mut lists: Vec<(&str, Vec<&str>, Option<usize>)> = touched
            .into_iter()
            .map(|id| {
                let items = state.list_items(id);
                let known = arranged.prefix(id, &items);
                (id, items, known)
            })
            .collect();
        // Where each resource of the commit and each item of those lists not known arranged is
        // stored, read in a few statements (not one per resource); kept up to date with what
        // the transaction creates and deletes, it places the lists' items below.
        let unknown_items: Vec<&str> = lists
            .iter()
            .flat_map(|(id, items, known)| {
                std::iter::once(*id).chain(items[known.unwrap_or(0)..].iter().copied())
            })
            .collect();
        let mut stored = self
            .reader()
            .rids_of(resources.iter().map(String::as_str).chain(unknown_items))?;
        let mut plans = Vec::new();
        for id in &resources {
            if let Some(plan) = self.plan(id, state.view(id), stored.get(id))? {
                plans.push(plan);
            }
        }
        // An update or a delete can take items out of lists (a deleted item leaves every
        // list; a list whose query changed is emptied): every list is then arranged afresh.
        if plans.iter().any(|p| !matches!(p, Plan::Create(_))) {
            arranged.clear();
            let prefixes: Vec<&str> = lists
                .iter()
                .flat_map(|(_, items, known)| items[..known.unwrap_or(0)].iter().copied())
                .collect();
            stored.extend(self.reader().rids_of(prefixes)?);
            for (_, _, known) in &mut lists {
                *known = None;
            }
        }
        let time = (self.clock)();
        let (mut tx, query_lists, inserts) = self.begin()?;
        for (file, text) in &carried.files {
            crate::schema::store_registered(tx.sql(), &carried.registry, file, text, time)?;
        }
        // The ops in multi-row statements (an initial sync stores thousands a commit).
        let rows: Vec<&[u8]> = changes
            .stored
            .iter()
            .flat_map(|(id, op)| [&share.0[..], &id.0[..], op.wire()])
            .collect();
        crate::sql::insert_rows(
            tx.sql(),
            "INSERT OR IGNORE INTO ap_ops(share, id, wire)",
            3,
            &rows,
        )?;
        for (peer, seq) in &changes.author_seqs {
            tx.sql()
                .prepare_cached(
                    "INSERT INTO ap_op_seqs(share, peer, seq) VALUES (?1, ?2, ?3)
                     ON CONFLICT(share, peer) DO UPDATE SET seq = max(seq, excluded.seq)",
                )?
                .execute(params![
                    &share.0[..],
                    peer.to_string(),
                    i64::try_from(*seq).unwrap_or(i64::MAX)
                ])?;
        }
        // New resources in one pass, as `create_many` writes them (statements kept).
        let mut created = Vec::new();
        let mut rest = Vec::new();
        for plan in plans {
            match plan {
                Plan::Create(r) => created.push(r),
                other => rest.push(other),
            }
        }
        let (new_lists, rids) = tx.create(inserts, query_lists, &created)?;
        for (r, rid) in created.iter().zip(rids) {
            stored.insert(r.id.clone(), (rid, r.type_name.clone()));
        }
        let mut replaced = Vec::new();
        for plan in &rest {
            match plan {
                Plan::Create(_) => unreachable!("created above"),
                Plan::Update { rid, old, new } => {
                    if let Some(ql) = tx.update(query_lists, *rid, old, new, true)? {
                        replaced.push((*rid, ql));
                    }
                }
                Plan::Delete { rid, id, type_name } => {
                    tx.delete(Target {
                        rid: *rid,
                        id,
                        type_name,
                    })?;
                    stored.remove(id);
                    replaced.push((*rid, None));
                }
            }
        }
        // A query-backed list's items follow its query, shared or not (`lists.*` refuses to
        // edit them by hand): replicated adds, removes and moves of it are kept as ops and
        // change nothing here, whoever signed them.
        let query_backed = |rid: i64| match replaced.iter().find(|(r, _)| *r == rid) {
            Some((_, ql)) => ql.is_some(),
            None => new_lists.iter().any(|ql| ql.rid == rid) || query_lists.get(rid).is_some(),
        };
        for (list_id, wanted, known) in &lists {
            let Some((lrid, ltype)) = stored.get(*list_id) else {
                arranged.forget(list_id);
                continue;
            };
            if query_backed(*lrid) {
                arranged.forget(list_id);
                continue;
            }
            let list = Target {
                rid: *lrid,
                id: list_id,
                type_name: ltype,
            };
            // The items in the replica's order (an item whose create has not arrived yet joins
            // when it does) after those known arranged: removed, added or moved in one pass.
            let from = known.unwrap_or(0);
            let order: Vec<Target<'_>> = wanted[from..]
                .iter()
                .filter_map(|item| {
                    let (rid, type_name) = stored.get(*item)?;
                    Some(Target {
                        rid: *rid,
                        id: item,
                        type_name,
                    })
                })
                .collect();
            tx.list_arrange(query_lists, list, from, &order)?;
            arranged.extend(
                list_id,
                from,
                order.iter().map(|t| (t.id.to_owned(), t.rid)),
            );
        }
        tx.commit()?;
        self.arranged = arranged;
        self.query_lists.extend(new_lists);
        for (rid, ql) in replaced {
            self.query_lists.replace(rid, ql);
        }
        Ok(())
    }
}

/// A share's root as the genesis op's create value: `{"properties", "children"}` (local
/// metadata stays out).
pub fn create_value(r: &Resource) -> Json {
    json!({
        "properties": serde_json::to_value(&r.properties).unwrap_or_else(|_| json!({})),
        "children": serde_json::to_value(&r.children).unwrap_or_else(|_| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use allpeers_replica::store;
    use allpeers_replica::{Action, Level};
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::{Event, EventKind, Filter};

    const T0: u64 = 1_764_590_000_000;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn peer(n: u8) -> PeerId {
        PeerId::from_public_key(key(n).verifying_key().to_bytes())
    }

    fn link(url: &str) -> Resource {
        Resource::new("Link").with("url", url).with("title", url)
    }

    /// Alice's list with one link, shared with bob (write): her store and replica.
    fn alice_share() -> (Store, Replica, String) {
        let mut alice = Store::open_in_memory(&peer(1).to_string()).unwrap();
        let list = alice
            .create(Resource::new("List").with("title", "Holiday 2026"))
            .unwrap();
        let item = alice.create(link("https://a.example")).unwrap();
        alice.list_insert(&list.id, &item.id, None).unwrap();
        let mut replica =
            Replica::create_share(&key(1), &list.id, "List", create_value(&list), T0).unwrap();
        replica
            .author(
                &key(1),
                Action::Create {
                    resource: item.id.clone(),
                    kind: "Link".into(),
                    value: create_value(&item),
                },
                T0 + 1,
            )
            .unwrap();
        replica
            .author(
                &key(1),
                Action::ListAdd {
                    list: list.id.clone(),
                    item: item.id.clone(),
                },
                T0 + 2,
            )
            .unwrap();
        replica
            .author(
                &key(1),
                Action::Grant {
                    member: peer(2),
                    level: Level::Write,
                },
                T0 + 3,
            )
            .unwrap();
        store::commit(&mut alice, &mut replica).unwrap();
        (alice, replica, list.id)
    }

    #[test]
    fn replicated_ops_materialise_in_one_commit_and_fire_listeners() {
        let (alice, replica, list_id) = alice_share();
        let share = replica.share();
        let mut bob = Store::open_in_memory(&peer(2).to_string()).unwrap();
        let heard: Arc<Mutex<Vec<(EventKind, String)>>> = Arc::default();
        let sink = heard.clone();
        bob.subscribe(
            Filter::All,
            Arc::new(move |e: &Event| sink.lock().unwrap().push((e.kind, e.id.clone()))),
        )
        .unwrap();
        let mut theirs = Replica::new(share);
        for op in replica.kept_ops() {
            theirs.receive(op.wire(), T0 + 10).unwrap();
        }
        store::commit(&mut bob, &mut theirs).unwrap();
        let items = bob.list_items(&list_id).unwrap().items;
        assert_eq!(items.len(), 1);
        let got = bob.get(&list_id).unwrap().unwrap();
        assert_eq!(
            got.get("title").and_then(|v| v.as_str()),
            Some("Holiday 2026")
        );
        let heard = heard.lock().unwrap().clone();
        assert!(
            heard.contains(&(EventKind::Created, list_id.clone())),
            "{heard:?}"
        );
        assert!(
            heard.contains(&(EventKind::ItemAdded, list_id.clone())),
            "{heard:?}"
        );

        // Bob edits; the edit replicates back to alice as an update event.
        let (op, _) = theirs
            .author(
                &key(2),
                Action::SetProperty {
                    resource: list_id.clone(),
                    name: "title".into(),
                    value: json!("Holiday 2027"),
                },
                T0 + 20,
            )
            .unwrap();
        store::commit(&mut bob, &mut theirs).unwrap();
        let mut alice = alice;
        let mut mine = store::open(&alice, share, T0 + 30).unwrap();
        mine.receive(op.wire(), T0 + 30).unwrap();
        store::commit(&mut alice, &mut mine).unwrap();
        let title = alice.get(&list_id).unwrap().unwrap();
        assert_eq!(
            title.get("title").and_then(|v| v.as_str()),
            Some("Holiday 2027")
        );

        // Restart: the replica comes back from the store with the same state.
        let again = store::open(&bob, share, T0 + 40).unwrap();
        assert_eq!(again.state().hash(), theirs.state().hash());
        assert_eq!(again.level(&peer(2)), Some(Level::Write));
    }

    #[test]
    fn a_view_that_breaks_the_schema_is_kept_as_ops_but_not_written() {
        let (_alice, mut replica, list_id) = alice_share();
        let share = replica.share();
        let mut bob = Store::open_in_memory(&peer(2).to_string()).unwrap();
        let mut theirs = Replica::new(share);
        for op in replica.kept_ops() {
            theirs.receive(op.wire(), T0 + 10).unwrap();
        }
        store::commit(&mut bob, &mut theirs).unwrap();
        // `created` must be a date: a number-as-object breaks the schema.
        let (bad, _) = replica
            .author(
                &key(1),
                Action::SetProperty {
                    resource: list_id.clone(),
                    name: "created".into(),
                    value: json!({"not": "a date"}),
                },
                T0 + 20,
            )
            .unwrap();
        theirs.receive(bad.wire(), T0 + 21).unwrap();
        store::commit(&mut bob, &mut theirs).unwrap();
        assert!(
            bob.get(&list_id).unwrap().is_some(),
            "the last good version stays"
        );
        assert_eq!(
            bob.load(&share).unwrap().ops.len(),
            theirs.kept_ops().count(),
            "every op is kept"
        );
    }

    fn app_schema(ns: &str, name: &str) -> String {
        format!(
            r#"<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1"
         ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <include href="Resource.rng"><start><ref name="{ns}{name}"/></start></include>
  <define name="{ns}{name}"><element name="{ns}{name}"><ref name="{ns}{name}.content"/></element></define>
  <define name="{ns}{name}.content" ap:type="{ns}{name}" ap:extends="Resource">
    <interleave>
      <ref name="Resource.content"/>
      <optional><element name="done"><data type="boolean"/></element></optional>
    </interleave>
  </define>
</grammar>"#
        )
    }

    /// A share by alice of a resource `root` of type `kind`, carrying `schemas`, with bob a
    /// writer; bob's fresh store takes every op. Bob's store after the commit.
    fn shared_with_bob(kind: &str, root: &str, schemas: &[(String, String)]) -> (Store, Replica) {
        let value = json!({"properties": {"title": "buy milk"}, "children": {}});
        let mut replica = Replica::create_share(&key(1), root, kind, value, T0).unwrap();
        for (file, text) in schemas {
            let action = Action::Schema {
                file: file.clone(),
                text: text.clone(),
            };
            replica.author(&key(1), action, T0 + 1).unwrap();
        }
        let grant = Action::Grant {
            member: peer(2),
            level: Level::Write,
        };
        replica.author(&key(1), grant, T0 + 2).unwrap();
        let mut bob = Store::open_in_memory(&peer(2).to_string()).unwrap();
        let mut theirs = Replica::new(replica.share());
        // The genesis alone first (its type unknown here), then the rest: a schema arriving
        // after the resources of its type still brings them in.
        let ops: Vec<_> = replica.kept_ops().cloned().collect();
        let (genesis, rest): (Vec<_>, Vec<_>) =
            ops.into_iter().partition(|op| op.id() == replica.share());
        for op in genesis.iter().chain(&rest) {
            theirs.receive(op.wire(), T0 + 10).unwrap();
            store::commit(&mut bob, &mut theirs).unwrap();
        }
        (bob, theirs)
    }

    #[test]
    fn a_share_carries_its_apps_schema_to_a_store_that_never_saw_the_type() {
        use allpeers_model::schema::app::namespace;
        let ns = namespace("https://todo.example");
        let todo = format!("{ns}Todo");
        let file = format!("{ns}schema");
        let text = app_schema(&ns, "Todo");
        let root = format!("{ns}todo-1");
        let (bob, theirs) = shared_with_bob(&todo, &root, &[(file.clone(), text.clone())]);
        assert!(bob.registry().get(&todo).is_some());
        let got = bob
            .get(&root)
            .unwrap()
            .expect("materialised once its type came");
        assert_eq!(got.type_name, todo);
        assert_eq!(got.get("title").and_then(|v| v.as_str()), Some("buy milk"));
        // Kept across a restart: the registry replays it, the replica too.
        assert!(
            bob.registry()
                .files()
                .iter()
                .any(|(f, t)| *f == file && *t == text)
        );
        let again = store::open(&bob, theirs.share(), T0 + 20).unwrap();
        assert_eq!(again.state().schema(&file), Some(text.as_str()));
    }

    #[test]
    fn a_carried_schema_redefining_a_builtin_or_another_apps_type_is_refused() {
        use allpeers_model::schema::app::namespace;
        let ns = namespace("https://todo.example");
        let other = namespace("https://other.example");
        let todo = format!("{ns}Todo");
        let link_file = allpeers_model::schema::BUILTIN_FILES
            .iter()
            .find(|(f, _)| f.starts_with("Link"))
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .unwrap();
        let link_grown = link_file.1.replace(
            "<ref name=\"Resource.content\"/>",
            "<ref name=\"Resource.content\"/><optional><element name=\"evil\"><data type=\"string\"/></element></optional>",
        );
        assert_ne!(link_grown, link_file.1);
        /// What is tried, the share root's type, the schema files it carries.
        type Attack<'a> = (&'a str, String, Vec<(String, String)>);
        let attacks: Vec<Attack<'_>> = vec![
            // A built-in type's file, grown by one property.
            (
                "builtin file",
                todo.clone(),
                vec![(link_file.0.clone(), link_grown)],
            ),
            // A built-in type's name, declared in the app's own file.
            (
                "builtin name",
                todo.clone(),
                vec![(format!("{ns}schema"), app_schema("", "Link"))],
            ),
            // Another app's types, in the root app's file or in its own.
            (
                "other's types",
                todo.clone(),
                vec![(format!("{ns}schema"), app_schema(&other, "Todo"))],
            ),
            (
                "other's file",
                todo.clone(),
                vec![(format!("{other}schema"), app_schema(&other, "Todo"))],
            ),
            // A built-in root: the share speaks for no app.
            (
                "builtin root",
                "List".into(),
                vec![(format!("{ns}schema"), app_schema(&ns, "Todo"))],
            ),
        ];
        for (what, kind, schemas) in attacks {
            let root = format!("{ns}r");
            let (bob, theirs) = shared_with_bob(&kind, &root, &schemas);
            let builtin = Store::open_in_memory("x").unwrap();
            assert_eq!(
                bob.registry().files(),
                builtin.registry().files(),
                "{what}: the registry is as built in"
            );
            assert_eq!(
                bob.registry().all_props("Link").len(),
                builtin.registry().all_props("Link").len(),
                "{what}"
            );
            assert!(
                bob.registry().get(&format!("{other}Todo")).is_none(),
                "{what}"
            );
            assert_eq!(
                bob.load(&theirs.share()).unwrap().ops.len(),
                theirs.kept_ops().count(),
                "{what}: the ops are kept (peers still need them)"
            );
        }
    }

    /// A list of links shared with one op per item (a create placing it): bob's fresh store
    /// gets every item once, in order, from ops that each carry both.
    #[test]
    fn placing_creates_materialise_items_in_their_list() {
        let mut alice = Store::open_in_memory(&peer(1).to_string()).unwrap();
        let list = alice
            .create(Resource::new("List").with("title", "Holiday 2026"))
            .unwrap();
        let mut replica =
            Replica::create_share(&key(1), &list.id, "List", create_value(&list), T0).unwrap();
        let links: Vec<Resource> = (0..5)
            .map(|i| alice.create(link(&format!("https://{i}.example"))).unwrap())
            .collect();
        let actions = links.iter().map(|r| Action::CreateInList {
            resource: r.id.clone(),
            kind: r.type_name.clone(),
            value: create_value(r),
            list: list.id.clone(),
        });
        let ops = replica.author_many(&key(1), actions, T0 + 1).unwrap();
        assert_eq!(ops.len(), 5, "one op an item");
        let mut bob = Store::open_in_memory(&peer(2).to_string()).unwrap();
        let mut theirs = Replica::new(replica.share());
        // Newest first: the items' ops wait for the genesis, then all land.
        let mut ops_in = replica.kept_ops().cloned().collect::<Vec<_>>();
        ops_in.sort_by_key(|op| std::cmp::Reverse(op.order_key()));
        for op in &ops_in {
            theirs.receive(op.wire(), T0 + 10).unwrap();
        }
        store::commit(&mut bob, &mut theirs).unwrap();
        let ids: Vec<String> = links.iter().map(|r| r.id.clone()).collect();
        assert_eq!(bob.list_items(&list.id).unwrap().items, ids);
        let third = bob.get(&ids[2]).unwrap().unwrap();
        assert_eq!(
            third.get("url").and_then(|v| v.as_str()),
            Some("https://2.example")
        );
        // A later remove of the item's tag takes it out; the item stays.
        let tags = theirs.state().add_tags(&list.id, &ids[2]);
        assert_eq!(tags, vec![ops[2].id()]);
        let remove = Action::ListRemove {
            list: list.id.clone(),
            item: ids[2].clone(),
            tags,
        };
        theirs.author(&key(1), remove, T0 + 20).unwrap();
        store::commit(&mut bob, &mut theirs).unwrap();
        assert_eq!(bob.list_items(&list.id).unwrap().items.len(), 4);
        assert!(bob.get(&ids[2]).unwrap().is_some());
        assert_eq!(
            store::open(&bob, theirs.share(), T0 + 30)
                .unwrap()
                .state()
                .hash(),
            theirs.state().hash()
        );
    }

    /// A link `id` created in `list` (one op).
    fn placing(list: &str, id: &str) -> Action {
        let r = link(&format!("https://{id}.example")).with_id(id);
        Action::CreateInList {
            resource: r.id.clone(),
            kind: r.type_name.clone(),
            value: create_value(&r),
            list: list.to_owned(),
        }
    }

    /// Commits to a list write only what follows the run of items already in place, without
    /// reading the rest back (`list::Arranged`); whatever happens between them — items out of
    /// order, a move, a remove, a delete, a local write, another connection's write — the
    /// stored list is the replica's order after every commit.
    #[test]
    fn a_list_committed_in_steps_is_the_replicas_order_after_each_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bob.db");
        let mut alice = Store::open_in_memory(&peer(1).to_string()).unwrap();
        let list = alice
            .create(Resource::new("List").with("title", "Holiday 2026"))
            .unwrap();
        let mut replica =
            Replica::create_share(&key(1), &list.id, "List", create_value(&list), T0).unwrap();
        let mut bob = Store::open(&path, &peer(2).to_string()).unwrap();
        let mut theirs = Replica::new(replica.share());
        let t = std::cell::Cell::new(T0);
        let n = std::cell::Cell::new(0);
        // Alice appends `count` links; bob takes them in one commit and checks his list.
        let append =
            |replica: &mut Replica, theirs: &mut Replica, bob: &mut Store, count: usize| {
                t.set(t.get() + 10);
                let actions: Vec<Action> = (0..count)
                    .map(|_| {
                        n.set(n.get() + 1);
                        placing(&list.id, &format!("item{}", n.get()))
                    })
                    .collect();
                for op in replica.author_many(&key(1), actions, t.get()).unwrap() {
                    theirs.receive(op.wire(), t.get()).unwrap();
                }
                store::commit(bob, theirs).unwrap();
            };
        let check = |bob: &Store, theirs: &Replica, what: &str| {
            let want: Vec<String> = theirs
                .state()
                .list_items(&list.id)
                .into_iter()
                .map(str::to_owned)
                .collect();
            assert_eq!(bob.list_items(&list.id).unwrap().items, want, "{what}");
        };
        let genesis: Vec<_> = replica.kept_ops().cloned().collect();
        for op in genesis {
            theirs.receive(op.wire(), T0).unwrap();
        }
        append(&mut replica, &mut theirs, &mut bob, 300);
        check(&bob, &theirs, "first commit");
        append(&mut replica, &mut theirs, &mut bob, 200);
        check(&bob, &theirs, "appended");
        // Items arriving out of the list's order (a peer fetched from in another order, or
        // two writers' ops): every other one first, then the rest, which fall among the last
        // commit's items. Only the list's end is arranged again.
        t.set(t.get() + 10);
        let actions: Vec<Action> = (0..40)
            .map(|i| placing(&list.id, &format!("interleaved{i}")))
            .collect();
        let ops = replica.author_many(&key(1), actions, t.get()).unwrap();
        let (odd, even): (Vec<_>, Vec<_>) = ops.iter().enumerate().partition(|(i, _)| i % 2 == 1);
        for half in [odd, even] {
            for (_, op) in half {
                theirs.receive(op.wire(), t.get()).unwrap();
            }
            store::commit(&mut bob, &mut theirs).unwrap();
            check(&bob, &theirs, "interleaved");
        }
        // A move of the first item to the end, with more items: arranged afresh.
        let first = theirs.state().list_items(&list.id)[0].to_owned();
        let last_key = theirs
            .state()
            .list_order(&list.id)
            .last()
            .unwrap()
            .1
            .clone();
        t.set(t.get() + 10);
        let to_end = Action::ListMove {
            list: list.id.clone(),
            item: first.clone(),
            position: allpeers_replica::position::between(Some(&last_key), None).unwrap(),
        };
        let (op, _) = replica.author(&key(1), to_end, t.get()).unwrap();
        theirs.receive(op.wire(), t.get()).unwrap();
        append(&mut replica, &mut theirs, &mut bob, 5);
        check(&bob, &theirs, "moved");
        // A local remove (a write of this store) and another connection's remove: the next
        // commit sees both and puts the items back where the replica has them.
        let items = bob.list_items(&list.id).unwrap().items;
        bob.list_remove(&list.id, &items[3]).unwrap();
        Store::open(&path, &peer(2).to_string())
            .unwrap()
            .list_remove(&list.id, &items[7])
            .unwrap();
        append(&mut replica, &mut theirs, &mut bob, 5);
        check(&bob, &theirs, "after other writes");
        // A replicated delete of an item takes it out of the list.
        t.set(t.get() + 10);
        let delete = Action::Delete {
            resource: items[10].clone(),
        };
        let (op, _) = replica.author(&key(1), delete, t.get()).unwrap();
        theirs.receive(op.wire(), t.get()).unwrap();
        store::commit(&mut bob, &mut theirs).unwrap();
        append(&mut replica, &mut theirs, &mut bob, 5);
        let got = bob.list_items(&list.id).unwrap().items;
        assert!(!got.contains(&items[10]), "the deleted item is out");
        assert_eq!(got.len(), 300 + 200 + 40 + 5 + 5 + 5 - 1);
        let order: Vec<&str> = got.iter().map(String::as_str).collect();
        let want: Vec<&str> = theirs
            .state()
            .list_items(&list.id)
            .into_iter()
            .filter(|id| *id != items[10])
            .collect();
        assert_eq!(order, want, "after a delete");
        assert_eq!(bob.integrity_check().unwrap(), "ok");
    }

    /// Replicated list ops on a shared query-backed list (a writer's, or an old node's) are
    /// kept as ops and change nothing: the list's query decides its items, as it does for
    /// `lists.*` locally.
    #[test]
    fn list_ops_on_a_query_backed_list_change_nothing_at_merge() {
        let mut alice = Store::open_in_memory(&peer(1).to_string()).unwrap();
        let list = alice
            .create(
                Resource::new("List")
                    .with("title", "Every link")
                    .with("query", r#"{"type":"Link"}"#),
            )
            .unwrap();
        let a = alice.create(link("https://a.example")).unwrap();
        let b = alice.create(link("https://b.example")).unwrap();
        let before = alice.list_items(&list.id).unwrap().items;
        assert_eq!(before.len(), 2);
        let mut replica =
            Replica::create_share(&key(1), &list.id, "List", create_value(&list), T0).unwrap();
        let grant = Action::Grant {
            member: peer(2),
            level: Level::Write,
        };
        replica.author(&key(1), grant, T0 + 1).unwrap();
        for r in [&a, &b] {
            let place = Action::CreateInList {
                resource: r.id.clone(),
                kind: r.type_name.clone(),
                value: create_value(r),
                list: list.id.clone(),
            };
            replica.author(&key(1), place, T0 + 2).unwrap();
        }
        let mut changes = replica.take_changes();
        changes.resources.clear();
        alice.commit(&replica.share(), &changes, &replica).unwrap();
        // Bob (a writer) removes one, moves the other, and adds a List that the query does not
        // match: signed and valid, but not a query-backed list's to change.
        let mut theirs = Replica::new(replica.share());
        for op in replica.kept_ops() {
            theirs.receive(op.wire(), T0 + 10).unwrap();
        }
        let folder = Resource::new("List").with("title", "not a link");
        let edits = [
            Action::ListRemove {
                list: list.id.clone(),
                item: a.id.clone(),
                tags: theirs.state().add_tags(&list.id, &a.id),
            },
            Action::ListMove {
                list: list.id.clone(),
                item: b.id.clone(),
                position: "1".into(),
            },
            Action::CreateInList {
                resource: "folder".into(),
                kind: "List".into(),
                value: create_value(&folder),
                list: list.id.clone(),
            },
        ];
        let mut signed = Vec::new();
        for edit in edits {
            let (op, accepted) = theirs.author(&key(2), edit, T0 + 20).unwrap();
            assert_eq!(accepted, allpeers_replica::Accepted::Applied);
            signed.push(op);
        }
        for op in &signed {
            replica.receive(op.wire(), T0 + 30).unwrap();
        }
        store::commit(&mut alice, &mut replica).unwrap();
        assert_eq!(alice.list_items(&list.id).unwrap().items, before);
        assert!(alice.get("folder").unwrap().is_some(), "the item exists");
        assert_eq!(
            alice.load(&replica.share()).unwrap().ops.len(),
            replica.kept_ops().count(),
            "every op is kept"
        );
    }

    /// A store file whose `ap_ops` is the `WITHOUT ROWID` table of the stores made before
    /// 2026-12-05 opens with every op moved to today's table: the replica comes back the same,
    /// and new ops (and duplicates) are written to it as before.
    #[test]
    fn ops_of_a_store_made_with_the_old_table_are_kept_when_it_opens() {
        let (_, mut replica, list_id) = alice_share();
        let share = replica.share();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let mut old = Store::open(&path, &peer(1).to_string()).unwrap();
            let changes = Changes {
                stored: replica.kept_ops().map(|op| (op.id(), op.clone())).collect(),
                ..Changes::default()
            };
            old.commit(&share, &changes, &replica).unwrap();
            // The table as the old schema made it, with the same rows.
            old.conn
                .execute_batch(
                    "CREATE TABLE ap_ops_old(share BLOB NOT NULL, id BLOB NOT NULL, wire BLOB NOT NULL, PRIMARY KEY(share, id)) WITHOUT ROWID;
                     INSERT INTO ap_ops_old(share, id, wire) SELECT share, id, wire FROM ap_ops;
                     DROP TABLE ap_ops;
                     ALTER TABLE ap_ops_old RENAME TO ap_ops;",
                )
                .unwrap();
        }
        let mut store = Store::open(&path, &peer(1).to_string()).unwrap();
        let sql: String = store
            .conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ap_ops'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!sql.to_ascii_uppercase().contains("WITHOUT ROWID"), "{sql}");
        assert_eq!(
            store.load(&share).unwrap().ops.len(),
            replica.kept_ops().count()
        );
        let again = store::open(&store, share, T0 + 10).unwrap();
        assert_eq!(again.state().hash(), replica.state().hash());
        // A new op lands in the new table; an op already there is not written twice.
        replica
            .author(
                &key(1),
                Action::SetProperty {
                    resource: list_id,
                    name: "title".into(),
                    value: json!("Holiday 2027"),
                },
                T0 + 20,
            )
            .unwrap();
        let mut changes = replica.take_changes();
        changes.stored = replica.kept_ops().map(|op| (op.id(), op.clone())).collect();
        store.commit(&share, &changes, &replica).unwrap();
        assert_eq!(
            store.load(&share).unwrap().ops.len(),
            replica.kept_ops().count()
        );
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn share_records_round_trip_and_forget_drops_ops() {
        let (mut alice, replica, _) = alice_share();
        let record = ShareRecord {
            share: replica.share(),
            root: "r".into(),
            peer: peer(1).to_string(),
            state: "accepted".into(),
            title: "Holiday 2026".into(),
        };
        alice.put_share_record(&record).unwrap();
        assert_eq!(alice.share_records().unwrap(), vec![record]);
        alice.forget_share(&replica.share()).unwrap();
        assert!(alice.share_records().unwrap().is_empty());
        assert!(alice.load(&replica.share()).unwrap().ops.is_empty());
    }
}
