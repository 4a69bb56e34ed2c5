//! Order independence: the same ops in any order give the same state, members and live set.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::tests::{ALICE, BOB, CAROL, DAVE, T0, copy, holiday, key, peer};
use super::*;

/// Everything a replica converges on: state hash, members, live op ids.
fn fingerprint(r: &Replica) -> (String, BTreeMap<PeerId, Level>, Vec<OpId>) {
    (
        r.state().hash().to_hex().to_string(),
        r.members(),
        r.items().iter().map(|i| i.id).collect(),
    )
}

/// Inserts ops (signatures were checked when they were made) in the given order.
fn replay<'a>(share: ShareId, ops: impl IntoIterator<Item = &'a Op>) -> Replica {
    let mut r = Replica::new(share);
    for op in ops {
        r.insert_verified(op.clone(), T0 + 1_000_000).unwrap();
    }
    r
}

fn all_ops(replicas: &[&Replica]) -> Vec<Op> {
    let mut ops: BTreeMap<OpId, Op> = BTreeMap::new();
    for r in replicas {
        for op in r.kept_ops() {
            ops.insert(op.id(), op.clone());
        }
    }
    ops.into_values().collect()
}

fn heap_permutations(n: usize, visit: &mut impl FnMut(&[usize])) {
    let mut order: Vec<usize> = (0..n).collect();
    let mut c = vec![0; n];
    visit(&order);
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                order.swap(0, i);
            } else {
                order.swap(c[i], i);
            }
            visit(&order);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
}

fn act(r: &mut Replica, by: u8, action: Action, now: u64) -> Op {
    r.author(&key(by), action, now).unwrap().0
}

fn prop(name: &str, value: serde_json::Value) -> Action {
    Action::SetProperty {
        resource: "holiday".into(),
        name: name.into(),
        value,
    }
}

#[test]
fn every_order_of_concurrent_edits_gives_one_state() {
    let mut alice = holiday();
    let add1 = act(
        &mut alice,
        ALICE,
        Action::ListAdd {
            list: "holiday".into(),
            item: "rome".into(),
        },
        T0 + 10,
    );
    let mut bob = replay(alice.share(), alice.kept_ops().collect::<Vec<_>>());
    // Concurrent: both rename; bob removes rome (the tag he saw) while alice adds it again;
    // bob creates a note that alice... deletes after seeing it, while bob edits it.
    let a_name = act(&mut alice, ALICE, prop("name", json!("A")), T0 + 20);
    let b_name = act(&mut bob, BOB, prop("name", json!("B")), T0 + 20);
    let b_remove = act(
        &mut bob,
        BOB,
        Action::ListRemove {
            list: "holiday".into(),
            item: "rome".into(),
            tags: vec![add1.id()],
        },
        T0 + 21,
    );
    let a_add = act(
        &mut alice,
        ALICE,
        Action::ListAdd {
            list: "holiday".into(),
            item: "rome".into(),
        },
        T0 + 22,
    );
    let b_note = act(
        &mut bob,
        BOB,
        Action::Create {
            resource: "note".into(),
            kind: "Note".into(),
            value: json!({"properties": {"text": "pack"}}),
        },
        T0 + 23,
    );
    alice.insert(b_note.clone(), T0 + 24).unwrap();
    let a_delete = act(
        &mut alice,
        ALICE,
        Action::Delete {
            resource: "note".into(),
        },
        T0 + 25,
    );
    let b_edit = act(
        &mut bob,
        BOB,
        Action::SetProperty {
            resource: "note".into(),
            name: "text".into(),
            value: json!("later"),
        },
        T0 + 30,
    );
    let mut base: Vec<Op> = holiday().kept_ops().cloned().collect();
    base.push(add1);
    let ops = [
        a_name.clone(),
        b_name.clone(),
        b_remove,
        a_add,
        b_note,
        a_delete,
        b_edit,
    ];
    let mut seen: BTreeSet<(String, BTreeMap<PeerId, Level>, Vec<OpId>)> = BTreeSet::new();
    let mut count = 0;
    heap_permutations(ops.len(), &mut |order| {
        let r = replay(
            alice.share(),
            base.iter().chain(order.iter().map(|&i| &ops[i])),
        );
        seen.insert(fingerprint(&r));
        count += 1;
    });
    assert_eq!(count, 5_040);
    assert_eq!(seen.len(), 1, "{} different outcomes", seen.len());
    let r = replay(alice.share(), base.iter().chain(ops.iter()));
    let view = r.resource("holiday").unwrap();
    // Same stamp: the author breaks the tie; rome stays in (alice's second add was not removed);
    // the note is deleted for good although bob's edit is stamped later.
    let later = if a_name.order_key() > b_name.order_key() {
        "A"
    } else {
        "B"
    };
    assert_eq!(view["properties"]["name"], json!(later));
    assert_eq!(view["items"], json!(["rome"]));
    assert_eq!(
        r.resource("note").unwrap(),
        json!({"id": "note", "deleted": true})
    );
}

/// Random ops by four authors on four partitioned replicas, with grants, revocations and
/// partial exchanges; then every op in random orders into fresh replicas.
#[test]
fn random_histories_converge_in_any_order() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let genesis_holder = holiday();
        let base: Vec<Op> = genesis_holder.kept_ops().cloned().collect();
        let share = genesis_holder.share();
        let authors = [ALICE, BOB, CAROL, DAVE];
        let mut replicas: Vec<Replica> =
            authors.iter().map(|_| replay(share, base.iter())).collect();
        let mut now = T0 + 100;
        for _ in 0..60 {
            now += rng.gen_range(0..3);
            let who = rng.gen_range(0..authors.len());
            let author = authors[who];
            let resource = ["holiday", "a", "b"][rng.gen_range(0..3)].to_string();
            let action = match rng.gen_range(0..10) {
                0 if rng.gen_bool(0.5) => Action::CreateInList {
                    resource: format!("i{}", rng.gen_range(0..3)),
                    kind: "Note".into(),
                    value: json!({"properties": {"n": rng.gen_range(0..5)}}),
                    list: "holiday".into(),
                },
                0 => Action::Create {
                    resource,
                    kind: "Note".into(),
                    value: json!({"properties": {"n": rng.gen_range(0..5)}}),
                },
                1 => Action::Delete {
                    resource: ["a", "b", "i0"][rng.gen_range(0..3)].into(),
                },
                2 => Action::ListAdd {
                    list: "holiday".into(),
                    item: format!("i{}", rng.gen_range(0..3)),
                },
                3 => {
                    let item = format!("i{}", rng.gen_range(0..3));
                    let tags: Vec<OpId> = replicas[who]
                        .kept_ops()
                        .filter(|op| match &op.body().action {
                            Action::ListAdd { item: i, .. }
                            | Action::CreateInList { resource: i, .. } => *i == item,
                            _ => false,
                        })
                        .map(Op::id)
                        .collect();
                    Action::ListRemove {
                        list: "holiday".into(),
                        item,
                        tags,
                    }
                }
                4 => Action::SetChild {
                    resource,
                    slot: "notes".into(),
                    key: format!("k{}", rng.gen_range(0..2)),
                    value: rng
                        .gen_bool(0.7)
                        .then(|| json!({"properties": {"v": rng.gen_range(0..9)}})),
                },
                5 if author == ALICE => Action::Grant {
                    member: peer(authors[rng.gen_range(1..4)]),
                    level: [Level::Read, Level::Write, Level::Admin][rng.gen_range(0..3)],
                },
                6 if author == ALICE || author == BOB => Action::Revoke {
                    member: peer(authors[rng.gen_range(1..4)]),
                    after_seq: 0,
                    also: vec![],
                },
                7 => Action::ListMove {
                    list: "holiday".into(),
                    item: format!("i{}", rng.gen_range(0..3)),
                    position: ["3", "5", "55", "7"][rng.gen_range(0..4)].into(),
                },
                8 if rng.gen_bool(0.5) => Action::Schema {
                    file: ["app_x_a", "app_x_b"][rng.gen_range(0..2)].into(),
                    text: format!("v{}", rng.gen_range(0..4)),
                },
                _ => Action::SetProperty {
                    resource,
                    name: ["x", "y"][rng.gen_range(0..2)].into(),
                    value: json!(rng.gen_range(0..100)),
                },
            };
            if rng.gen_bool(0.3) {
                // Ops under one batch signature (a membership op among them signed alone).
                let around = |name: &str, v| Action::SetProperty {
                    resource: "holiday".into(),
                    name: name.into(),
                    value: json!(v),
                };
                let batch = [around("y", rng.gen_range(0..9)), action, around("z", 1)];
                replicas[who].author_many(&key(author), batch, now).unwrap();
            } else {
                replicas[who].author(&key(author), action, now).unwrap();
            }
            // Sometimes one replica passes everything it holds to another.
            if rng.gen_bool(0.3) {
                let from = rng.gen_range(0..authors.len());
                let to = rng.gen_range(0..authors.len());
                let ops: Vec<Op> = replicas[from].kept_ops().cloned().collect();
                for op in ops {
                    let _ = replicas[to].insert_verified(op, now);
                }
            }
        }
        let ops = all_ops(&replicas.iter().collect::<Vec<_>>());
        let reference = fingerprint(&replay(share, ops.iter()));
        for _ in 0..5 {
            let mut shuffled = ops.clone();
            shuffled.shuffle(&mut rng);
            assert_eq!(
                fingerprint(&replay(share, shuffled.iter())),
                reference,
                "seed {seed}"
            );
        }
        // Each replica, given everything, lands on the same state (whatever it pruned before).
        for r in &mut replicas {
            for op in &ops {
                let _ = r.insert_verified(op.clone(), now);
            }
            assert_eq!(fingerprint(r), reference, "seed {seed}");
        }
    }
}

fn placed(item: &str) -> Action {
    Action::CreateInList {
        resource: item.into(),
        kind: "Link".into(),
        value: json!({"properties": {"url": format!("https://{item}.example")}}),
        list: "holiday".into(),
    }
}

/// One op creates an item in the list: every order of it with concurrent edits of its item,
/// its tag's removal, a re-add, a move and a delete gives one state and one live set; the
/// delete wins, the re-add keeps the item in, and the placing op stays live while its tag does.
#[test]
fn every_order_of_a_placing_create_and_edits_of_its_halves_gives_one_state() {
    let mut alice = holiday();
    let place = act(&mut alice, ALICE, placed("rome"), T0 + 10);
    let mut bob = replay(alice.share(), alice.kept_ops().collect::<Vec<_>>());
    assert_eq!(
        bob.resource("holiday").unwrap()["items"],
        json!(["rome"]),
        "one op: the item and its place"
    );
    assert_eq!(
        bob.resource("rome").unwrap()["properties"]["url"],
        json!("https://rome.example")
    );
    let tags = bob.state().add_tags("holiday", "rome");
    let b_remove = act(
        &mut bob,
        BOB,
        Action::ListRemove {
            list: "holiday".into(),
            item: "rome".into(),
            tags,
        },
        T0 + 20,
    );
    assert_eq!(b_remove.body().action, {
        Action::ListRemove {
            list: "holiday".into(),
            item: "rome".into(),
            tags: vec![place.id()],
        }
    });
    let b_edit = act(
        &mut bob,
        BOB,
        Action::SetProperty {
            resource: "rome".into(),
            name: "title".into(),
            value: json!("Rome"),
        },
        T0 + 21,
    );
    let a_move = act(
        &mut alice,
        ALICE,
        Action::ListMove {
            list: "holiday".into(),
            item: "rome".into(),
            position: "5".into(),
        },
        T0 + 22,
    );
    let a_paris = act(&mut alice, ALICE, placed("paris"), T0 + 23);
    let a_delete_paris = act(
        &mut alice,
        ALICE,
        Action::Delete {
            resource: "paris".into(),
        },
        T0 + 24,
    );
    let b_readd = act(
        &mut bob,
        BOB,
        Action::ListAdd {
            list: "holiday".into(),
            item: "rome".into(),
        },
        T0 + 25,
    );
    let mut base: Vec<Op> = holiday().kept_ops().cloned().collect();
    base.push(place.clone());
    let ops = [
        b_remove,
        b_edit,
        a_move,
        a_paris.clone(),
        a_delete_paris,
        b_readd.clone(),
    ];
    let mut seen = BTreeSet::new();
    heap_permutations(ops.len(), &mut |order| {
        let r = replay(
            alice.share(),
            base.iter().chain(order.iter().map(|&i| &ops[i])),
        );
        seen.insert(fingerprint(&r));
    });
    assert_eq!(seen.len(), 1, "{} different outcomes", seen.len());
    // The placing op arriving last, after everything that names its halves.
    let holder = holiday();
    let mut late: Vec<&Op> = holder.kept_ops().collect();
    late.extend(ops.iter());
    late.push(&place);
    let last = replay(alice.share(), late);
    let r = replay(alice.share(), base.iter().chain(ops.iter()));
    assert_eq!(fingerprint(&last), fingerprint(&r));
    let view = r.resource("holiday").unwrap();
    // Rome moved to "5", after paris's arrival key.
    assert_eq!(view["items"], json!(["paris", "rome"]), "{view}");
    assert_eq!(
        r.resource("rome").unwrap()["properties"]["title"],
        json!("Rome")
    );
    assert_eq!(
        r.resource("paris").unwrap(),
        json!({"id": "paris", "deleted": true})
    );
    // Rome's placing op still creates rome (its tag is removed, its create lives); paris's
    // still places paris (deleted, its tag not removed); bob's re-add is live.
    let live: BTreeSet<OpId> = r.items().iter().map(|i| i.id).collect();
    assert!(live.contains(&place.id()));
    assert!(live.contains(&a_paris.id()));
    assert!(live.contains(&b_readd.id()));
}

/// A placing op leaves the live set only once both halves are dead, in either order.
#[test]
fn a_placing_create_is_superseded_when_its_second_half_dies() {
    for remove_first in [true, false] {
        let mut r = holiday();
        let place = act(&mut r, ALICE, placed("rome"), T0 + 10);
        let remove = Action::ListRemove {
            list: "holiday".into(),
            item: "rome".into(),
            tags: vec![place.id()],
        };
        let delete = Action::Delete {
            resource: "rome".into(),
        };
        let (first, second) = if remove_first {
            (remove, delete)
        } else {
            (delete, remove)
        };
        act(&mut r, ALICE, first, T0 + 11);
        assert!(r.live_op(&place.id()).is_some(), "one half lives");
        act(&mut r, ALICE, second, T0 + 12);
        assert!(r.live_op(&place.id()).is_none(), "both halves dead");
        assert_eq!(r.resource("holiday").unwrap()["items"], json!([]));
        // Stored all the same, and the same after a restart-like replay.
        assert!(r.kept_ops().any(|op| op.id() == place.id()));
        assert_eq!(fingerprint(&copy(&r)), fingerprint(&r));
    }
    // Into a deleted list, of a deleted item: dead on arrival; of a live item: it lives.
    let mut r = holiday();
    act(
        &mut r,
        ALICE,
        Action::Delete {
            resource: "rome".into(),
        },
        T0 + 10,
    );
    let (op, accepted) = r.author(&key(ALICE), placed("rome"), T0 + 11).unwrap();
    assert_eq!(accepted, Accepted::Applied, "its tag lives");
    assert!(r.live_op(&op.id()).is_some());
    assert_eq!(r.resource("holiday").unwrap()["items"], json!(["rome"]));
    let mut gone = holiday();
    let mut note = placed("note");
    if let Action::CreateInList { list, .. } = &mut note {
        *list = "trip".into();
    }
    act(
        &mut gone,
        ALICE,
        Action::Delete {
            resource: "trip".into(),
        },
        T0 + 10,
    );
    act(
        &mut gone,
        ALICE,
        Action::Delete {
            resource: "note".into(),
        },
        T0 + 11,
    );
    let (_, accepted) = gone.author(&key(ALICE), note, T0 + 12).unwrap();
    assert_eq!(accepted, Accepted::Superseded);
}
