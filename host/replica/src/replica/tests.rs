use serde_json::json;

use super::*;
use crate::reconcile::ItemSource;

pub(crate) fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

pub(crate) fn peer(n: u8) -> PeerId {
    PeerId::from_public_key(key(n).verifying_key().to_bytes())
}

pub(crate) const ALICE: u8 = 1;
pub(crate) const BOB: u8 = 2;
pub(crate) const CAROL: u8 = 3;
pub(crate) const DAVE: u8 = 4;
pub(crate) const T0: u64 = 1_764_590_000_000;

/// Alice's share of a list, with bob as writer and carol as reader.
pub(crate) fn holiday() -> Replica {
    let mut r = Replica::create_share(
        &key(ALICE),
        "holiday",
        "List",
        json!({"properties": {"name": "Holiday 2026"}}),
        T0,
    )
    .unwrap();
    grant(&mut r, ALICE, BOB, Level::Write, T0 + 1);
    grant(&mut r, ALICE, CAROL, Level::Read, T0 + 2);
    r
}

pub(crate) fn grant(r: &mut Replica, by: u8, to: u8, level: Level, now: u64) -> Op {
    let (op, _) = r
        .author(
            &key(by),
            Action::Grant {
                member: peer(to),
                level,
            },
            now,
        )
        .unwrap();
    op
}

pub(crate) fn set(
    r: &mut Replica,
    by: u8,
    name: &str,
    value: serde_json::Value,
    now: u64,
) -> (Op, Accepted) {
    r.author(
        &key(by),
        Action::SetProperty {
            resource: "holiday".into(),
            name: name.into(),
            value,
        },
        now,
    )
    .unwrap()
}

/// A copy of `r` made from its kept ops (what a peer syncing everything would hold).
pub(crate) fn copy(r: &Replica) -> Replica {
    let mut c = Replica::new(r.share());
    for op in r.kept_ops() {
        c.insert(op.clone(), T0 + 1_000_000).unwrap();
    }
    c
}

fn name(r: &Replica) -> serde_json::Value {
    r.resource("holiday").unwrap()["properties"]["name"].clone()
}

#[test]
fn a_writer_edits_and_a_copy_sees_it() {
    let mut r = holiday();
    let (_, accepted) = set(&mut r, BOB, "name", json!("Holiday 2027"), T0 + 10);
    assert_eq!(accepted, Accepted::Applied);
    assert_eq!(name(&r), json!("Holiday 2027"));
    let c = copy(&r);
    assert_eq!(c.state().hash(), r.state().hash());
    assert_eq!(c.members(), r.members());
    assert_eq!(c.level(&peer(CAROL)), Some(Level::Read));
    assert_eq!(c.level(&peer(DAVE)), None);
}

#[test]
fn a_reader_cannot_write_nor_a_stranger() {
    let mut r = holiday();
    let (op, accepted) = set(&mut r, CAROL, "name", json!("mine"), T0 + 10);
    assert_eq!(accepted, Accepted::Rejected(Rejection::Level));
    let (_, accepted) = set(&mut r, DAVE, "name", json!("mine"), T0 + 11);
    assert_eq!(accepted, Accepted::Rejected(Rejection::Level));
    assert_eq!(name(&r), json!("Holiday 2026"));
    assert!(
        r.live_op(&op.id()).is_none(),
        "a rejected data op is not offered"
    );
}

#[test]
fn a_non_admin_cannot_grant_and_nobody_can_revoke_the_owner() {
    let mut r = holiday();
    let (_, accepted) = r
        .author(
            &key(BOB),
            Action::Grant {
                member: peer(DAVE),
                level: Level::Admin,
            },
            T0 + 10,
        )
        .unwrap();
    assert_eq!(accepted, Accepted::Rejected(Rejection::Level));
    assert_eq!(r.level(&peer(DAVE)), None);
    grant(&mut r, ALICE, BOB, Level::Admin, T0 + 11);
    let (_, accepted) = r
        .author(
            &key(BOB),
            Action::Revoke {
                member: peer(ALICE),
                after_seq: 0,
                also: vec![],
            },
            T0 + 12,
        )
        .unwrap();
    assert_eq!(accepted, Accepted::Rejected(Rejection::TargetsOwner));
    assert_eq!(r.level(&peer(ALICE)), Some(Level::Admin));
}

#[test]
fn a_member_may_leave_but_not_revoke_another_and_a_stranger_cannot_leave() {
    let mut r = holiday();
    let (_, before) = set(&mut r, BOB, "name", json!("bob was here"), T0 + 9);
    assert_eq!(before, Accepted::Applied);
    let revoke = |who: u8| Action::Revoke {
        member: peer(who),
        after_seq: 0,
        also: vec![],
    };
    let (_, accepted) = r.author(&key(CAROL), revoke(BOB), T0 + 10).unwrap();
    assert_eq!(accepted, Accepted::Rejected(Rejection::Level));
    let (_, accepted) = r.author(&key(DAVE), revoke(DAVE), T0 + 11).unwrap();
    assert_eq!(accepted, Accepted::Rejected(Rejection::Level));
    let (leave, accepted) = r.author(&key(BOB), revoke(BOB), T0 + 12).unwrap();
    assert_eq!(accepted, Accepted::Applied);
    assert_eq!(r.level(&peer(BOB)), None);
    assert_eq!(
        name(&r),
        json!("bob was here"),
        "what the member wrote before leaving stands"
    );
    let (_, after) = set(&mut r, BOB, "name", json!("back door"), T0 + 13);
    assert_eq!(after, Accepted::Rejected(Rejection::Level));
    // Every copy agrees, whichever order the ops arrive in.
    let c = copy(&r);
    assert_eq!(c.state().hash(), r.state().hash());
    assert_eq!(c.level(&peer(BOB)), None);
    assert!(c.live_op(&leave.id()).is_some(), "the leave is passed on");
}

#[test]
fn a_forged_signature_and_an_op_of_another_share_are_refused() {
    let mut r = holiday();
    let (op, _) = set(&mut r, BOB, "name", json!("x"), T0 + 10);
    let mut forged = op.wire().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let mut other = holiday();
    assert_eq!(
        other.receive(&forged, T0),
        Err(Refused::Op(OpError::Signature))
    );
    // Another share with the same people: bob's op cannot be replayed into it.
    let mut elsewhere = Replica::create_share(&key(ALICE), "x", "List", json!({}), T0 + 5).unwrap();
    assert_eq!(elsewhere.insert(op, T0 + 20), Err(Refused::WrongShare));
    assert_eq!(elsewhere.pending(), (0, 0));
}

#[test]
fn revocation_rejects_later_and_concurrent_ops_and_keeps_earlier_ones() {
    let mut alice = holiday();
    let mut bob = copy(&alice);
    // Bob writes once, alice sees it, then revokes him.
    let (early, _) = set(&mut bob, BOB, "early", json!(1), T0 + 10);
    assert_eq!(
        alice.insert(early.clone(), T0 + 11).unwrap(),
        Accepted::Applied
    );
    // Meanwhile (concurrently) bob writes again, not knowing of the revocation.
    let (concurrent, _) = set(&mut bob, BOB, "concurrent", json!(2), T0 + 12);
    let (revoke, accepted) = alice
        .author(
            &key(ALICE),
            Action::Revoke {
                member: peer(BOB),
                after_seq: 0,
                also: vec![],
            },
            T0 + 13,
        )
        .unwrap();
    assert_eq!(accepted, Accepted::Applied);
    assert!(matches!(
        revoke.body().action,
        Action::Revoke { after_seq: 1, .. }
    ));
    assert_eq!(
        alice.insert(concurrent.clone(), T0 + 14).unwrap(),
        Accepted::Rejected(Rejection::Revoked)
    );
    // Bob gets the revocation: his concurrent op is undone there too, and new ones fail.
    assert_eq!(bob.insert(revoke, T0 + 15).unwrap(), Accepted::Applied);
    let (after, accepted) = set(&mut bob, BOB, "after", json!(3), T0 + 16);
    assert_eq!(accepted, Accepted::Rejected(Rejection::Level));
    assert_eq!(
        alice.insert(after, T0 + 17).unwrap(),
        Accepted::Rejected(Rejection::Level)
    );
    for r in [&alice, &bob] {
        let props = &r.resource("holiday").unwrap()["properties"];
        assert_eq!(props["early"], json!(1));
        assert!(props.get("concurrent").is_none(), "{props}");
        assert!(props.get("after").is_none());
        assert_eq!(r.level(&peer(BOB)), None);
    }
    assert_eq!(alice.state().hash(), bob.state().hash());
}

#[test]
fn a_re_grant_after_a_revocation_lets_the_member_write_again() {
    let mut r = holiday();
    r.author(
        &key(ALICE),
        Action::Revoke {
            member: peer(BOB),
            after_seq: 0,
            also: vec![],
        },
        T0 + 10,
    )
    .unwrap();
    grant(&mut r, ALICE, BOB, Level::Write, T0 + 11);
    let (_, accepted) = set(&mut r, BOB, "name", json!("back"), T0 + 12);
    assert_eq!(accepted, Accepted::Applied);
    assert_eq!(copy(&r).state().hash(), r.state().hash());
}

#[test]
fn admins_revoking_each_other_concurrently_resolve_the_same_way_in_any_order() {
    let mut base = holiday();
    grant(&mut base, ALICE, BOB, Level::Admin, T0 + 5);
    grant(&mut base, ALICE, DAVE, Level::Admin, T0 + 6);
    let mut bob = copy(&base);
    let mut dave = copy(&base);
    let (bob_revokes, _) = bob
        .author(
            &key(BOB),
            Action::Revoke {
                member: peer(DAVE),
                after_seq: 0,
                also: vec![],
            },
            T0 + 10,
        )
        .unwrap();
    let (dave_revokes, _) = dave
        .author(
            &key(DAVE),
            Action::Revoke {
                member: peer(BOB),
                after_seq: 0,
                also: vec![],
            },
            T0 + 11,
        )
        .unwrap();
    // Dave, revoked concurrently, also grants carol admin: banned along with his revocation.
    let (dave_grants, _) = dave
        .author(
            &key(DAVE),
            Action::Grant {
                member: peer(CAROL),
                level: Level::Admin,
            },
            T0 + 12,
        )
        .unwrap();
    let ops = [bob_revokes, dave_revokes, dave_grants];
    let mut hashes = BTreeSet::new();
    let mut members = BTreeSet::new();
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [1, 0, 2]] {
        let mut r = copy(&base);
        for i in order {
            r.insert(ops[i].clone(), T0 + 20).unwrap();
        }
        hashes.insert(r.state().hash().to_hex().to_string());
        members.insert(format!("{:?}", r.members()));
        // The earlier revocation (bob's) wins.
        assert_eq!(r.level(&peer(DAVE)), None);
        assert_eq!(r.level(&peer(BOB)), Some(Level::Admin));
        assert_eq!(r.level(&peer(CAROL)), Some(Level::Read));
    }
    assert_eq!(members.len(), 1);
}

#[test]
fn a_revoked_admin_cannot_back_date_a_grant_under_the_revocation() {
    let mut base = holiday();
    grant(&mut base, ALICE, DAVE, Level::Admin, T0 + 5);
    let mut dave = copy(&base);
    let (revoke, _) = base
        .author(
            &key(ALICE),
            Action::Revoke {
                member: peer(DAVE),
                after_seq: 0,
                also: vec![],
            },
            T0 + 100,
        )
        .unwrap();
    // Dave never saw the revocation and stamps his grant before it.
    let (backdated, _) = dave
        .author(
            &key(DAVE),
            Action::Grant {
                member: peer(CAROL),
                level: Level::Admin,
            },
            T0 + 50,
        )
        .unwrap();
    for ops in [[revoke.clone(), backdated.clone()], [backdated, revoke]] {
        let mut r = copy(&base);
        for op in ops {
            let _ = r.insert(op, T0 + 200);
        }
        assert_eq!(r.level(&peer(CAROL)), Some(Level::Read));
        assert_eq!(r.level(&peer(DAVE)), None);
    }
}

#[test]
fn equivocation_keeps_one_op_whatever_the_order() {
    let r = holiday();
    let bob = PeerId::from_public_key(key(BOB).verifying_key().to_bytes());
    let make = |value: &str| {
        Op::sign(
            OpBody {
                share: r.share(),
                author: bob,
                seq: 1,
                stamp: Stamp {
                    wall_ms: T0 + 10,
                    counter: 0,
                },
                parents: r.heads(),
                action: Action::SetProperty {
                    resource: "holiday".into(),
                    name: "name".into(),
                    value: json!(value),
                },
            },
            &key(BOB),
        )
        .unwrap()
    };
    let (a, b) = (make("a"), make("b"));
    let winner = if a.id() < b.id() { "a" } else { "b" };
    for (first, second) in [(a.clone(), b.clone()), (b, a)] {
        let mut c = copy(&r);
        c.insert(first, T0 + 20).unwrap();
        let outcome = c.insert(second.clone(), T0 + 20).unwrap();
        assert_eq!(name(&c), json!(winner));
        if second.body().action
            != (Action::SetProperty {
                resource: "holiday".into(),
                name: "name".into(),
                value: json!(winner),
            })
        {
            assert_eq!(outcome, Accepted::Rejected(Rejection::Equivocation));
        }
    }
}

#[test]
fn future_ops_are_deferred_then_applied_and_missing_parents_wait() {
    let mut source = holiday();
    let far = T0 + 10 * MAX_DRIFT_MS;
    let (future, _) = set(&mut source, BOB, "name", json!("from the future"), far);
    let mut r = copy(&holiday());
    assert_eq!(r.insert(future.clone(), T0).unwrap(), Accepted::Deferred);
    assert_eq!(r.pending(), (0, 1));
    assert_eq!(name(&r), json!("Holiday 2026"));
    let due = r.poll_timeout().unwrap();
    assert_eq!(due, far - MAX_DRIFT_MS);
    r.handle_timeout(due - 1);
    assert_eq!(r.pending(), (0, 1), "not yet");
    r.handle_timeout(due);
    assert_eq!(r.pending(), (0, 0));
    assert_eq!(name(&r), json!("from the future"));

    // An op naming a grant we lack waits for it.
    let mut source = holiday();
    let g = grant(&mut source, ALICE, DAVE, Level::Write, T0 + 10);
    let (dave_op, _) = set(&mut source, DAVE, "by", json!("dave"), T0 + 11);
    let mut r = copy(&holiday());
    assert_eq!(r.insert(dave_op, T0 + 20).unwrap(), Accepted::Waiting);
    assert_eq!(r.pending(), (1, 0));
    assert_eq!(r.insert(g, T0 + 20).unwrap(), Accepted::Applied);
    assert_eq!(r.pending(), (0, 0));
    assert_eq!(
        r.resource("holiday").unwrap()["properties"]["by"],
        json!("dave")
    );
}

#[test]
fn waiting_ops_are_bounded() {
    let mut r = copy(&holiday());
    let bob = peer(BOB);
    let mut refused = None;
    for i in 0..=MAX_WAITING_OPS as u64 {
        let op = Op::sign(
            OpBody {
                share: r.share(),
                author: bob,
                seq: i + 1,
                stamp: Stamp {
                    wall_ms: T0 + i,
                    counter: 0,
                },
                parents: vec![OpId([7; 32])],
                action: Action::Delete {
                    resource: "x".into(),
                },
            },
            &key(BOB),
        )
        .unwrap();
        if let Err(e) = r.insert(op, T0) {
            refused = Some((i, e));
            break;
        }
    }
    assert_eq!(
        refused,
        Some((MAX_WAITING_OPS as u64, Refused::TooManyWaiting))
    );
}

#[test]
fn superseded_ops_leave_the_live_set_and_stay_stored() {
    let mut r = holiday();
    r.take_changes();
    let (first, _) = set(&mut r, BOB, "name", json!("one"), T0 + 10);
    let (second, _) = set(&mut r, BOB, "name", json!("two"), T0 + 11);
    let changes = r.take_changes();
    assert!(changes.stored.contains_key(&second.id()));
    assert!(changes.stored.contains_key(&first.id()));
    assert_eq!(changes.resources, BTreeSet::from(["holiday".to_string()]));
    assert!(r.live_op(&first.id()).is_none());
    let live: Vec<OpId> = r.items().iter().map(|i| i.id).collect();
    assert!(live.contains(&second.id()) && !live.contains(&first.id()));
    // An old op arriving late loses at once and is not offered.
    let mut late = copy(&holiday());
    late.insert(second.clone(), T0 + 20).unwrap();
    assert_eq!(late.insert(first, T0 + 20).unwrap(), Accepted::Superseded);
    assert_eq!(late.items().len(), r.items().len());
    assert_eq!(late.state().hash(), r.state().hash());
}

#[test]
fn a_revocation_brings_back_the_value_a_rejected_op_had_superseded() {
    let mut alice = holiday();
    let mut bob = copy(&alice);
    let (mine, _) = set(&mut alice, ALICE, "name", json!("alice's"), T0 + 10);
    bob.insert(mine.clone(), T0 + 10).unwrap();
    // Bob overwrites, concurrently with his revocation.
    let (his, _) = set(&mut bob, BOB, "name", json!("bob's"), T0 + 20);
    let (revoke, _) = alice
        .author(
            &key(ALICE),
            Action::Revoke {
                member: peer(BOB),
                after_seq: 0,
                also: vec![],
            },
            T0 + 15,
        )
        .unwrap();
    assert_eq!(name(&bob), json!("bob's"));
    assert!(
        bob.live_op(&mine.id()).is_none(),
        "alice's value is dormant at bob"
    );
    bob.insert(revoke, T0 + 30).unwrap();
    assert_eq!(name(&bob), json!("alice's"));
    assert!(bob.live_op(&mine.id()).is_some());
    assert!(bob.live_op(&his.id()).is_none());
}

#[test]
fn a_replica_can_be_shared_between_the_daemons_tasks() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Replica>();
    send_and_sync::<crate::sync::SyncPeer>();
}

#[test]
fn a_member_who_jumps_seqs_before_revocation_cannot_back_fill_after_it() {
    let mut alice = holiday();
    let bob = peer(BOB);
    let share = alice.share();
    let signed = |seq: u64, wall_ms: u64, parents: Vec<OpId>, value: &str| {
        Op::sign(
            OpBody {
                share,
                author: bob,
                seq,
                stamp: Stamp {
                    wall_ms,
                    counter: 0,
                },
                parents,
                action: Action::SetProperty {
                    resource: "holiday".into(),
                    name: value.into(),
                    value: json!(value),
                },
            },
            &key(BOB),
        )
        .unwrap()
    };
    let heads = alice.heads();
    // Bob writes seq 1, then jumps to seq 1000; alice sees both and revokes him.
    let one = signed(1, T0 + 10, heads.clone(), "one");
    let jump = signed(1000, T0 + 11, heads.clone(), "jump");
    alice.insert(one, T0 + 20).unwrap();
    alice.insert(jump.clone(), T0 + 20).unwrap();
    let (revoke, _) = alice
        .author(
            &key(ALICE),
            Action::Revoke {
                member: bob,
                after_seq: 0,
                also: vec![],
            },
            T0 + 30,
        )
        .unwrap();
    assert_eq!(
        revoke.body().action,
        Action::Revoke {
            member: bob,
            after_seq: 1,
            also: vec![jump.id()]
        }
    );
    // Later, bob back-fills seq 500 on the old heads, as if made before the revocation.
    let backfill = signed(500, T0 + 40, heads, "backfill");
    assert_eq!(
        alice.insert(backfill, T0 + 50).unwrap(),
        Accepted::Rejected(Rejection::Revoked)
    );
    let props = &alice.resource("holiday").unwrap()["properties"];
    assert_eq!(
        (props["one"].clone(), props["jump"].clone()),
        (json!("one"), json!("jump"))
    );
    assert!(props.get("backfill").is_none());
}

#[test]
fn grants_and_revocations_say_the_membership_changed() {
    let mut r = Replica::create_share(
        &key(ALICE),
        "holiday",
        "List",
        json!({"properties": {"name": "Holiday 2026"}}),
        T0,
    )
    .unwrap();
    r.take_changes();
    grant(&mut r, ALICE, BOB, Level::Write, T0 + 1);
    assert!(r.take_changes().membership_changed, "a grant");
    set(&mut r, BOB, "name", json!("Trip"), T0 + 2);
    assert!(!r.take_changes().membership_changed, "a data op");
    r.author(
        &key(ALICE),
        Action::Revoke {
            member: peer(BOB),
            after_seq: 0,
            also: vec![],
        },
        T0 + 3,
    )
    .unwrap();
    assert!(r.take_changes().membership_changed, "a revocation");
    assert_eq!(r.level(&peer(BOB)), None);
}

#[test]
fn a_placing_create_needs_write_like_its_two_halves() {
    let mut r = holiday();
    let placing = |item: &str| Action::CreateInList {
        resource: item.into(),
        kind: "Link".into(),
        value: json!({"properties": {"url": "https://x.example"}}),
        list: "holiday".into(),
    };
    let (refused, accepted) = r.author(&key(CAROL), placing("mine"), T0 + 10).unwrap();
    assert_eq!(accepted, Accepted::Rejected(Rejection::Level));
    let (_, accepted) = r.author(&key(DAVE), placing("theirs"), T0 + 11).unwrap();
    assert_eq!(accepted, Accepted::Rejected(Rejection::Level));
    assert!(r.resource("mine").is_none() && r.resource("theirs").is_none());
    assert_eq!(r.resource("holiday").unwrap()["items"], json!([]));
    assert!(r.live_op(&refused.id()).is_none());
    let (op, accepted) = r.author(&key(BOB), placing("rome"), T0 + 12).unwrap();
    assert_eq!(accepted, Accepted::Applied);
    assert_eq!(r.resource("holiday").unwrap()["items"], json!(["rome"]));
    // Bob's bytes under a made-up signature: refused before they count.
    let mut forged = op.canonical().to_vec();
    forged.extend_from_slice(&[7; 64]);
    assert!(r.receive(&forged, T0 + 13).is_err());
    // A copy from the kept ops holds the same.
    assert_eq!(copy(&r).state().hash(), r.state().hash());
}

/// Ops made within one millisecond are reconciled in the order they were made (their stamps'
/// counters), not by id: a fresh peer then fetches a list's items in list order.
#[test]
fn reconciliation_items_follow_the_stamps_within_a_millisecond() {
    let mut r = holiday();
    let made: Vec<OpId> = (10..60)
        .map(|n| grant(&mut r, ALICE, n, Level::Read, T0 + 10).id())
        .collect();
    let items = r.items();
    let order: Vec<OpId> = (0..items.len())
        .map(|i| items.item(i).id)
        .filter(|id| made.contains(id))
        .collect();
    assert_eq!(order, made);
}

/// A held op keeps its bytes but not its decoded value (the state has its own copy); a rebuild
/// (a membership op after data) decodes the values again, and a replica fed held ops gets them.
#[test]
fn held_ops_leave_their_values_to_the_state_and_a_rebuild_decodes_them_again() {
    let mut r = holiday();
    let (op, _) = set(&mut r, BOB, "name", json!("Holiday 2027"), T0 + 10);
    let held = r.live_op(&op.id()).unwrap();
    assert_eq!(held.wire(), op.wire());
    assert!(matches!(&held.body().action, Action::SetProperty { value, .. } if value.is_null()));
    let before = r.state().hash();
    // A membership op: every op judged again and the state merged afresh from the held ops.
    grant(&mut r, ALICE, DAVE, Level::Read, T0 + 20);
    assert_eq!(name(&r), json!("Holiday 2027"));
    assert_eq!(r.state().hash(), before);
    let c = copy(&r);
    assert_eq!(name(&c), json!("Holiday 2027"));
    assert_eq!(c.state().hash(), before);
}
