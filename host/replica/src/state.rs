//! The materialised state of a share: a pure, commutative merge of the valid data ops.
//!
//! Every field is a CRDT whose merge does not depend on arrival order:
//! - the type, each property and each child `(slot, key)` is a last-writer-wins register
//!   ordered by [`OrderKey`] (HLC stamp, author, op id), so there is always one winner;
//! - a list is add-wins: an item is in while one of its add tags is not removed; its place is
//!   a last-writer-wins position register (a move), else its add's arrival key ([`position`]);
//! - a delete is a tombstone that wins over everything, whatever its stamp: nothing resurrects;
//! - each schema file the share carries is a last-writer-wins register.
//!
//! A `CreateInList` op is two halves merged as their own ops would be: the item's create and the
//! list's add under the op's id as tag. It stays live while either half does.
//!
//! Applying an op also says which ops it made dead (an overwritten register, removed add tags,
//! everything of a deleted resource): those leave the reconciled set, so sync follows current
//! state rather than history.

use std::collections::{BTreeMap, BTreeSet};

use litemap::LiteMap;
use serde_json::{Map, Value as Json, json};

use crate::op::{Action, Op, OpId, OrderKey, canonical_json};
use crate::position;

#[derive(Debug, Clone, PartialEq)]
struct Register<T> {
    key: OrderKey,
    value: T,
}

impl<T> Register<T> {
    /// Writes `value` if `key` is later; returns the op that lost (the old winner, or the
    /// newcomer itself), if any.
    fn write(slot: &mut Option<Register<T>>, key: OrderKey, value: T) -> Option<OpId> {
        match slot {
            Some(current) if current.key >= key => Some(key.id).filter(|_| current.key != key),
            Some(current) => {
                let old = current.key.id;
                *current = Register { key, value };
                Some(old)
            }
            None => {
                *slot = Some(Register { key, value });
                None
            }
        }
    }
}

/// A few op ids (a resource's creates, an item's add tags: almost always one) in a sorted vector:
/// a `BTreeSet` allocates a node of eleven ids for one, and a share holds one of each per item.
type OpSet = LiteMap<OpId, ()>;

/// The state of one resource. The per-item fields are flat, sorted vectors ([`LiteMap`]), not
/// B-trees: a list of 100,000 items holds one `ResourceState` each, and a B-tree's first node
/// is sized for eleven entries (~1.5 KB for five properties) where a resource has a few.
#[derive(Debug, Clone, Default, PartialEq)]
struct ResourceState {
    deletes: BTreeSet<OpId>,
    creates: OpSet,
    kind: Option<Register<String>>,
    properties: LiteMap<String, Option<Register<Json>>>,
    children: BTreeMap<(String, String), Option<Register<Option<Json>>>>,
    /// Live add tags per item.
    adds: BTreeMap<String, OpSet>,
    /// Each add tag's arrival key (see [`position`]): where an item nobody moved sits.
    arrivals: BTreeMap<OpId, String>,
    /// Where a move put each item: last writer wins.
    positions: BTreeMap<String, Option<Register<String>>>,
    removed_tags: BTreeSet<OpId>,
    removes: BTreeSet<OpId>,
    /// The items by (position key, id): the list's order, kept with every change of `adds`,
    /// `arrivals` and `positions` (see [`ResourceState::rekey`]) rather than sorted for every
    /// read (a store reads a list's order at each commit, and a list can hold 100,000 items).
    order: BTreeSet<(String, String)>,
}

impl ResourceState {
    fn deleted(&self) -> bool {
        !self.deletes.is_empty()
    }

    /// Merges one data op of this resource (not a `CreateInList`, whose halves go to
    /// [`ResourceState::create`] and [`ResourceState::add`]).
    fn apply(&mut self, op: &Op, action: &Action) -> Applied {
        let key = op.order_key();
        let id = op.id();
        let resource = action.resource().expect("a data op").to_owned();
        let mut applied = Applied::default();
        if self.deleted() {
            if matches!(action, Action::Delete { .. }) {
                self.deletes.insert(id);
                applied.changed.push(resource);
            } else {
                applied.dead_on_arrival = true;
            }
            return applied;
        }
        applied.changed.push(resource);
        match action {
            Action::Create { kind, value, .. } => {
                self.create(key, kind, value, &mut applied);
            }
            Action::SetProperty { name, value, .. } => {
                let slot = self.properties.entry(name.clone()).or_default();
                let loser = Register::write(slot, key, value.clone());
                settle(loser, id, false, &self.creates, &mut applied);
            }
            Action::SetChild {
                slot,
                key: child,
                value,
                ..
            } => {
                let reg = self
                    .children
                    .entry((slot.clone(), child.clone()))
                    .or_default();
                let loser = Register::write(reg, key, value.clone());
                settle(loser, id, false, &self.creates, &mut applied);
            }
            Action::ListAdd { item, .. } => {
                if !self.add(id, item, op.body().stamp) {
                    applied.dead_on_arrival = true;
                    applied.changed.clear();
                }
            }
            Action::ListMove { item, position, .. } => {
                let before = self.item_key(item);
                let slot = self.positions.entry(item.clone()).or_default();
                let loser = Register::write(slot, key, position.clone());
                settle(loser, id, false, &self.creates, &mut applied);
                self.rekey(item, before);
            }
            Action::ListRemove { item, tags, .. } => {
                let before = self.item_key(item);
                self.removes.insert(id);
                self.removed_tags.extend(tags.iter().copied());
                if let Some(live) = self.adds.get_mut(item) {
                    for tag in tags {
                        if live.remove(tag).is_some() {
                            applied.superseded.push(*tag);
                        }
                    }
                    if live.is_empty() {
                        self.adds.remove(item);
                    }
                }
                self.rekey(item, before);
            }
            Action::Delete { .. } => {
                applied.superseded = self.live_ops().into_iter().collect();
                *self = ResourceState {
                    deletes: BTreeSet::from([id]),
                    ..ResourceState::default()
                };
            }
            Action::CreateInList { .. }
            | Action::Grant { .. }
            | Action::Revoke { .. }
            | Action::Schema { .. } => {
                unreachable!("not one resource's op")
            }
        }
        applied
    }

    /// The create (or a placing create's first half) by the op of `key`: its type and every
    /// property and child as registers. False when the resource is deleted (the half is dead).
    fn create(&mut self, key: OrderKey, kind: &str, value: &Json, applied: &mut Applied) -> bool {
        if self.deleted() {
            return false;
        }
        let id = key.id;
        self.creates.insert(id, ());
        settle(
            Register::write(&mut self.kind, key, kind.to_owned()),
            id,
            true,
            &self.creates,
            applied,
        );
        if let Some(props) = value.get("properties").and_then(Json::as_object) {
            // A fresh resource's properties in one allocation of their number (growing one
            // by one would leave up to twice the room, per resource).
            self.properties.reserve(props.len());
            for (name, v) in props {
                let slot = self.properties.entry(name.clone()).or_default();
                let loser = Register::write(slot, key, v.clone());
                settle(loser, id, true, &self.creates, applied);
            }
        }
        if let Some(slots) = value.get("children").and_then(Json::as_object) {
            for (slot_name, list) in slots {
                for (i, child) in list.as_array().into_iter().flatten().enumerate() {
                    let slot = self
                        .children
                        .entry((slot_name.clone(), format!("{i:05}")))
                        .or_default();
                    let loser = Register::write(slot, key, Some(child.clone()));
                    settle(loser, id, true, &self.creates, applied);
                }
            }
        }
        true
    }

    /// Adds `item` to this list under tag `id` (a list add, or a placing create's second half)
    /// at the arrival key of `stamp`. False when the tag is dead: the list deleted, or the tag
    /// removed before it arrived.
    fn add(&mut self, id: OpId, item: &str, stamp: crate::op::Stamp) -> bool {
        if self.deleted() || self.removed_tags.contains(&id) {
            return false;
        }
        let before = self.item_key(item);
        self.adds.entry(item.to_owned()).or_default().insert(id, ());
        self.arrivals.insert(id, position::arrival(stamp));
        self.rekey(item, before);
        true
    }

    /// Where `item` sits in this list: a move's position, else the earliest live add's
    /// arrival key; `None` when it is not in the list.
    fn item_key(&self, item: &str) -> Option<String> {
        let tags = self.adds.get(item)?;
        let moved = self.positions.get(item).and_then(Option::as_ref);
        Some(match moved {
            Some(register) => register.value.clone(),
            None => tags
                .keys()
                .filter_map(|t| self.arrivals.get(t))
                .min()
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Files `item` in `order` under its key after a change (it was under `before`).
    fn rekey(&mut self, item: &str, before: Option<String>) {
        let after = self.item_key(item);
        if before == after {
            return;
        }
        if let Some(key) = before {
            self.order.remove(&(key, item.to_owned()));
        }
        if let Some(key) = after {
            self.order.insert((key, item.to_owned()));
        }
    }

    /// Every live op of this resource other than its deletes (they die with a delete).
    fn live_ops(&self) -> BTreeSet<OpId> {
        let mut live: BTreeSet<OpId> = self.creates.keys().chain(&self.removes).copied().collect();
        live.extend(self.properties.values().flatten().map(|r| r.key.id));
        live.extend(self.children.values().flatten().map(|r| r.key.id));
        live.extend(self.adds.values().flat_map(OpSet::keys));
        live.extend(self.positions.values().flatten().map(|r| r.key.id));
        live
    }

    /// The items in list order with their keys: by position (a move's, else the earliest live
    /// add's arrival key), then by id.
    fn ordered_items(&self) -> Vec<(&str, &str)> {
        let items: Vec<(&str, &str)> = self
            .order
            .iter()
            .map(|(key, item)| (item.as_str(), key.as_str()))
            .collect();
        #[cfg(test)]
        assert_eq!(
            items,
            self.sorted_items(),
            "the kept order is the sorted one"
        );
        items
    }

    /// The order [`ResourceState::ordered_items`] keeps, sorted afresh (to check it).
    #[cfg(test)]
    fn sorted_items(&self) -> Vec<(&str, &str)> {
        let mut items: Vec<(&str, &str)> = self
            .adds
            .iter()
            .map(|(item, tags)| {
                let moved = self.positions.get(item).and_then(Option::as_ref);
                let key = match moved {
                    Some(register) => register.value.as_str(),
                    None => tags
                        .keys()
                        .filter_map(|t| self.arrivals.get(t))
                        .min()
                        .map_or("", String::as_str),
                };
                (item.as_str(), key)
            })
            .collect();
        items.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
        items
    }
}

/// What applying one op did to liveness.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// The op itself is not live (it lost its register, or its resource is deleted).
    pub dead_on_arrival: bool,
    /// Ops that were live and no longer are.
    pub superseded: Vec<OpId>,
    /// The resources whose view changed (two for a `CreateInList`: the item and its list).
    pub changed: Vec<String>,
    /// The schema file whose text changed, if any.
    pub schema: Option<String>,
}

/// Books the loser of a register write: the newcomer is dead on arrival (unless a create, which
/// stays live while its resource exists, even when every field it set was overwritten), or the
/// old winner is superseded (unless it is a create, for the same reason).
fn settle(
    loser: Option<OpId>,
    newcomer: OpId,
    newcomer_is_create: bool,
    creates: &OpSet,
    applied: &mut Applied,
) {
    match loser {
        Some(l) if l == newcomer => applied.dead_on_arrival |= !newcomer_is_create,
        Some(l) if !creates.contains_key(&l) => applied.superseded.push(l),
        _ => {}
    }
}

/// A resource of the state, as [`State::view`] finds it.
pub enum View<'a> {
    /// Deleted: it never comes back.
    Deleted,
    Live(Parts<'a>),
}

/// A live resource's type, properties, children and items, borrowed from the state.
pub struct Parts<'a> {
    res: &'a ResourceState,
    kind: &'a str,
}

impl<'a> Parts<'a> {
    pub fn kind(&self) -> &'a str {
        self.kind
    }

    /// The properties set, by name (a property set to `null` included).
    pub fn properties(&self) -> impl Iterator<Item = (&'a str, &'a Json)> + use<'a> {
        self.res
            .properties
            .iter()
            .filter_map(|(k, r)| Some((k.as_str(), &r.as_ref()?.value)))
    }

    /// The children present, each with its slot: by slot, in each slot's order.
    pub fn children(&self) -> impl Iterator<Item = (&'a str, &'a Json)> + use<'a> {
        self.res
            .children
            .iter()
            .filter_map(|((slot, _key), reg)| match reg {
                Some(Register { value: Some(v), .. }) => Some((slot.as_str(), v)),
                _ => None,
            })
    }

    /// A list's items in order (empty for anything else).
    pub fn items(&self) -> Vec<&'a str> {
        self.res
            .ordered_items()
            .into_iter()
            .map(|(item, _)| item)
            .collect()
    }
}

/// The resources of one share, and the schema files it carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    resources: BTreeMap<String, ResourceState>,
    schemas: BTreeMap<String, Option<Register<String>>>,
    /// Each `CreateInList` op's item and list: such an op is live while either of its halves
    /// is (the item's create, the list's add tag), so it leaves the live set only when the
    /// second half dies.
    placements: BTreeMap<OpId, (String, String)>,
}

impl State {
    /// Merges one valid data op (membership ops carry no resource data and are ignored).
    pub fn apply(&mut self, op: &Op) -> Applied {
        let mut applied = self.apply_halves(op);
        if !self.placements.is_empty() {
            // A placing create's half died while the other half lives: not superseded yet.
            applied
                .superseded
                .retain(|id| !self.placement_alive(id).unwrap_or(false));
        }
        applied
    }

    /// Whether either half of placing create `id` is live (`None`: `id` places nothing).
    fn placement_alive(&self, id: &OpId) -> Option<bool> {
        let (item, list) = self.placements.get(id)?;
        let created = self
            .resources
            .get(item)
            .is_some_and(|r| r.creates.contains_key(id));
        let added = self
            .resources
            .get(list)
            .and_then(|r| r.adds.get(item))
            .is_some_and(|tags| tags.contains_key(id));
        Some(created || added)
    }

    fn apply_halves(&mut self, op: &Op) -> Applied {
        let key = op.order_key();
        let id = op.id();
        match &op.body().action {
            Action::Schema { file, text } => {
                let mut applied = Applied::default();
                let slot = self.schemas.entry(file.clone()).or_default();
                let before = slot.as_ref().map(|r| r.value.clone());
                let loser = Register::write(slot, key, text.clone());
                settle(loser, id, false, &OpSet::new(), &mut applied);
                if slot.as_ref().map(|r| &r.value) != before.as_ref() {
                    applied.schema = Some(file.clone());
                }
                applied
            }
            Action::CreateInList {
                resource,
                kind,
                value,
                list,
            } => {
                self.placements.insert(id, (resource.clone(), list.clone()));
                // Each half as its own op; the op is dead on arrival only if both halves are.
                let mut applied = Applied::default();
                let res = self.resources.entry(resource.clone()).or_default();
                let created = res.create(key, kind, value, &mut applied);
                if created {
                    applied.changed.push(resource.clone());
                }
                let lst = self.resources.entry(list.clone()).or_default();
                let added = lst.add(id, resource, op.body().stamp);
                if added {
                    applied.changed.push(list.clone());
                }
                applied.dead_on_arrival = !created && !added;
                applied
            }
            action => {
                let Some(resource) = action.resource() else {
                    return Applied::default();
                };
                let res = self.resources.entry(resource.to_owned()).or_default();
                res.apply(op, action)
            }
        }
    }

    /// The resource as the local API shows it: `{"id", "type", "properties", "children",
    /// "items"}`, or `{"id", "deleted": true}`. `None` if no op touched it.
    pub fn resource(&self, id: &str) -> Option<Json> {
        let parts = match self.view(id)? {
            View::Deleted => return Some(json!({"id": id, "deleted": true})),
            View::Live(parts) => parts,
        };
        let properties: Map<String, Json> = parts
            .properties()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        let mut children: Map<String, Json> = Map::new();
        for (slot, v) in parts.children() {
            children
                .entry(slot.to_owned())
                .or_insert_with(|| Json::Array(vec![]))
                .as_array_mut()
                .expect("slots are arrays")
                .push(v.clone());
        }
        let items: Vec<Json> = parts
            .items()
            .into_iter()
            .map(|item| Json::String(item.to_owned()))
            .collect();
        Some(json!({
            "id": id,
            "type": parts.kind(),
            "properties": properties,
            "children": children,
            "items": items,
        }))
    }

    /// What [`State::resource`] shows, borrowed from the state rather than built as JSON (a
    /// store writing thousands of new resources reads them this way). `None` if no op touched
    /// it, or none gave it a type.
    pub fn view(&self, id: &str) -> Option<View<'_>> {
        let res = self.resources.get(id)?;
        if res.deleted() {
            return Some(View::Deleted);
        }
        let kind = res.kind.as_ref()?.value.as_str();
        Some(View::Live(Parts { res, kind }))
    }

    /// The text of schema file `file` as the share carries it.
    pub fn schema(&self, file: &str) -> Option<&str> {
        self.schemas
            .get(file)
            .and_then(Option::as_ref)
            .map(|r| r.value.as_str())
    }

    /// The keys of the children present in `slot` of `resource`, in the view's order: the
    /// child at index `i` of the view is written by setting key `i` of this.
    pub fn child_keys(&self, resource: &str, slot: &str) -> Vec<String> {
        let Some(res) = self.resources.get(resource) else {
            return Vec::new();
        };
        res.children
            .range((slot.to_owned(), String::new())..)
            .take_while(|((s, _), _)| s == slot)
            .filter(|(_, reg)| matches!(reg, Some(Register { value: Some(_), .. })))
            .map(|((_, key), _)| key.clone())
            .collect()
    }

    /// The greatest key `slot` of `resource` ever had (removed children's too): a child
    /// appended with a greater key sorts last.
    pub fn last_child_key(&self, resource: &str, slot: &str) -> Option<&str> {
        let res = self.resources.get(resource)?;
        res.children
            .range((slot.to_owned(), String::new())..)
            .take_while(|((s, _), _)| s == slot)
            .last()
            .map(|((_, key), _)| key.as_str())
    }

    /// The live add tags of `item` in `list`: what a `ListRemove` must name to take it out.
    pub fn add_tags(&self, list: &str, item: &str) -> Vec<OpId> {
        self.resources
            .get(list)
            .and_then(|r| r.adds.get(item))
            .map(|tags| tags.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The items of `list` in order, borrowed (what a store arranging thousands of items reads).
    pub fn list_items(&self, list: &str) -> Vec<&str> {
        self.resources
            .get(list)
            .map(|r| {
                r.ordered_items()
                    .into_iter()
                    .map(|(item, _)| item)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The items of `list` in order, each with its position key (what a move computes the key
    /// between neighbours from).
    pub fn list_order(&self, list: &str) -> Vec<(String, String)> {
        self.resources
            .get(list)
            .map(|r| {
                r.ordered_items()
                    .into_iter()
                    .map(|(item, key)| (item.to_owned(), key.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The lists holding any of `ids` as an item (what a commit of those ids must re-arrange
    /// besides the lists it touched itself), without building any view.
    pub fn lists_holding<'a>(
        &'a self,
        ids: &'a BTreeSet<String>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.resources
            .iter()
            .filter(|(_, r)| !r.adds.is_empty() && ids.iter().any(|id| r.adds.contains_key(id)))
            .map(|(k, _)| k.as_str())
    }

    /// The type of resource `id`, if it exists (cheaper than its whole view).
    pub fn kind_of(&self, id: &str) -> Option<&str> {
        self.resources
            .get(id)
            .filter(|r| !r.deleted())
            .and_then(|r| r.kind.as_ref())
            .map(|k| k.value.as_str())
    }

    /// Ids of the resources that exist (created and not deleted), ascending.
    pub fn resource_ids(&self) -> impl Iterator<Item = &str> {
        self.resources
            .iter()
            .filter(|(_, r)| !r.deleted() && r.kind.is_some())
            .map(|(k, _)| k.as_str())
    }

    /// Ids of every resource an op touched, tombstones included.
    pub fn all_ids(&self) -> impl Iterator<Item = &str> {
        self.resources.keys().map(String::as_str)
    }

    /// A hash of every resource's view (tombstones included) and the schema files carried:
    /// equal states, equal hashes.
    pub fn hash(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        for id in self.resources.keys() {
            if let Some(view) = self.resource(id) {
                h.update(canonical_json(&view).as_bytes());
                h.update(b"\n");
            }
        }
        for (file, text) in &self.schemas {
            if let Some(r) = text {
                h.update(canonical_json(&json!({"schema": file, "text": r.value})).as_bytes());
                h.update(b"\n");
            }
        }
        h.finalize()
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    use super::*;
    use crate::op::{OpBody, Stamp};

    fn op(wall_ms: u64, action: Action) -> Op {
        let key = SigningKey::from_bytes(&[1; 32]);
        Op::sign(
            OpBody {
                share: OpId([1; 32]),
                author: allpeers_model::id::PeerId::from_public_key(key.verifying_key().to_bytes()),
                seq: wall_ms,
                stamp: Stamp {
                    wall_ms,
                    counter: 0,
                },
                parents: vec![OpId([1; 32])],
                action,
            },
            &key,
        )
        .unwrap()
    }

    #[test]
    fn a_deleted_resource_stays_deleted_whatever_comes_later() {
        let create = |t| {
            op(
                t,
                Action::Create {
                    resource: "r".into(),
                    kind: "Note".into(),
                    value: json!({"properties": {"text": t}}),
                },
            )
        };
        let mut state = State::default();
        let first = create(1);
        assert_eq!(
            state.apply(&first),
            Applied {
                changed: vec!["r".into()],
                ..Applied::default()
            }
        );
        let delete = op(
            2,
            Action::Delete {
                resource: "r".into(),
            },
        );
        assert_eq!(state.apply(&delete).superseded, vec![first.id()]);
        for later in [
            create(3),
            op(
                4,
                Action::SetProperty {
                    resource: "r".into(),
                    name: "text".into(),
                    value: json!("x"),
                },
            ),
            op(
                5,
                Action::ListAdd {
                    list: "r".into(),
                    item: "i".into(),
                },
            ),
        ] {
            let applied = state.apply(&later);
            assert!(applied.dead_on_arrival && applied.changed.is_empty());
        }
        assert_eq!(
            state.resource("r"),
            Some(json!({"id": "r", "deleted": true}))
        );
        assert_eq!(state.resource_ids().count(), 0);
    }

    #[test]
    fn items_keep_arrival_order_until_moved_and_concurrent_moves_settle_alike() {
        let add = |t, item: &str| {
            op(
                t,
                Action::ListAdd {
                    list: "l".into(),
                    item: item.into(),
                },
            )
        };
        let mv = |t, item: &str, position: &str| {
            op(
                t,
                Action::ListMove {
                    list: "l".into(),
                    item: item.into(),
                    position: position.into(),
                },
            )
        };
        let order = |state: &State| -> Vec<String> {
            state.list_order("l").into_iter().map(|(i, _)| i).collect()
        };
        let create = op(
            1,
            Action::Create {
                resource: "l".into(),
                kind: "List".into(),
                value: json!({}),
            },
        );
        // "z" is added before "a": arrival order, not id order.
        let (z, a, m) = (add(2, "z"), add(3, "a"), add(4, "m"));
        let mut state = State::default();
        for o in [&create, &z, &a, &m] {
            state.apply(o);
        }
        assert_eq!(order(&state), ["z", "a", "m"]);
        let keys = state.list_order("l");
        // "m" moved to the front, and concurrently (a later stamp wins) between "z" and "a".
        let front = mv(5, "m", &position::between(None, Some(&keys[0].1)).unwrap());
        let middle = mv(
            6,
            "m",
            &position::between(Some(&keys[0].1), Some(&keys[1].1)).unwrap(),
        );
        let mut one = state.clone();
        assert!(one.apply(&front).superseded.is_empty());
        assert_eq!(one.apply(&middle).superseded, vec![front.id()]);
        let mut other = state.clone();
        other.apply(&middle);
        assert!(other.apply(&front).dead_on_arrival);
        assert_eq!(order(&one), ["z", "m", "a"]);
        assert_eq!(one.hash(), other.hash());
        // An item added later appends; the resource view lists the same order.
        one.apply(&add(7, "b"));
        assert_eq!(order(&one), ["z", "m", "a", "b"]);
        assert_eq!(
            one.resource("l").unwrap()["items"],
            json!(["z", "m", "a", "b"])
        );
    }

    #[test]
    fn a_moved_item_concurrently_removed_stays_removed_in_any_order() {
        let create = op(
            1,
            Action::Create {
                resource: "l".into(),
                kind: "List".into(),
                value: json!({}),
            },
        );
        let add = |t, item: &str| {
            op(
                t,
                Action::ListAdd {
                    list: "l".into(),
                    item: item.into(),
                },
            )
        };
        let (a, b) = (add(2, "a"), add(3, "b"));
        let remove = op(
            4,
            Action::ListRemove {
                list: "l".into(),
                item: "a".into(),
                tags: vec![a.id()],
            },
        );
        // Concurrent with the remove and stamped after it: a move to the front.
        let front = position::between(
            None,
            Some(&position::arrival(Stamp {
                wall_ms: 2,
                counter: 0,
            })),
        )
        .unwrap();
        let moved = op(
            5,
            Action::ListMove {
                list: "l".into(),
                item: "a".into(),
                position: front,
            },
        );
        let ops = [&a, &remove, &moved];
        let mut hashes = BTreeSet::new();
        for order in [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let mut state = State::default();
            state.apply(&create);
            state.apply(&b);
            for i in order {
                state.apply(ops[i]);
            }
            assert_eq!(
                state.resource("l").unwrap()["items"],
                json!(["b"]),
                "{order:?}"
            );
            hashes.insert(state.hash().to_hex().to_string());
        }
        assert_eq!(hashes.len(), 1);
    }

    #[test]
    fn an_add_the_remover_did_not_see_keeps_the_item() {
        let mut state = State::default();
        let add1 = op(
            1,
            Action::ListAdd {
                list: "l".into(),
                item: "i".into(),
            },
        );
        let add2 = op(
            2,
            Action::ListAdd {
                list: "l".into(),
                item: "i".into(),
            },
        );
        let remove = op(
            3,
            Action::ListRemove {
                list: "l".into(),
                item: "i".into(),
                tags: vec![add1.id()],
            },
        );
        state.apply(&remove);
        // The removed tag arriving after its removal is dead at once; the other keeps the item.
        assert!(state.apply(&add1).dead_on_arrival);
        state.apply(&add2);
        let items = &state.resources["l"].adds["i"];
        assert_eq!(items.keys().collect::<Vec<_>>(), [&add2.id()]);
    }
}
