use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::*;
use crate::op::{Action, Level};
use crate::reconcile::MIN_FRAME_LIMIT;
use crate::store::{self, MemoryStore};

const T0: u64 = 1_764_590_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn peer(n: u8) -> PeerId {
    PeerId::from_public_key(key(n).verifying_key().to_bytes())
}

struct Node {
    me: u8,
    shares: BTreeMap<ShareId, Replica>,
    store: MemoryStore,
}

impl Node {
    fn new(me: u8, base: &[Op], share: ShareId) -> Node {
        let mut node = Node {
            me,
            shares: BTreeMap::new(),
            store: MemoryStore::default(),
        };
        let mut r = Replica::new(share);
        for op in base {
            r.insert(op.clone(), T0).unwrap();
        }
        node.shares.insert(share, r);
        node.commit();
        node
    }

    /// What the daemon does after each step: one store transaction of the replica's changes.
    fn commit(&mut self) {
        for r in self.shares.values_mut() {
            store::commit(&mut self.store, r).unwrap();
        }
    }

    /// Crash and restart: the replica is rebuilt from what the store holds.
    fn restart(&mut self, now: u64) {
        let shares: Vec<ShareId> = self.shares.keys().copied().collect();
        for share in shares {
            let r = store::open(&self.store, share, now).unwrap();
            // The store's materialised view matches the replica's.
            assert_eq!(
                self.store.resource(&share, "holiday"),
                r.resource("holiday").as_ref()
            );
            self.shares.insert(share, r);
        }
    }

    fn replica(&self) -> &Replica {
        self.shares.values().next().unwrap()
    }
}

/// Runs both directions of a sync between two nodes until no frame is left.
fn sync_pair(
    a: &mut Node,
    b: &mut Node,
    share: ShareId,
    now: u64,
) -> (Vec<Event>, Vec<Event>, usize) {
    let mut a_side = SyncPeer::new(peer(b.me), MIN_FRAME_LIMIT);
    let mut b_side = SyncPeer::new(peer(a.me), MIN_FRAME_LIMIT);
    let _ = a_side.start(share, &mut a.shares, now);
    let _ = b_side.start(share, &mut b.shares, now);
    let mut frames = 0;
    loop {
        let mut moved = false;
        while let Some(frame) = a_side.poll_transmit() {
            frames += 1;
            b_side.handle(&frame, &mut b.shares, now);
            b.commit();
            moved = true;
        }
        while let Some(frame) = b_side.poll_transmit() {
            frames += 1;
            a_side.handle(&frame, &mut a.shares, now);
            a.commit();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    let drain = |s: &mut SyncPeer| std::iter::from_fn(|| s.poll_event()).collect::<Vec<_>>();
    (drain(&mut a_side), drain(&mut b_side), frames)
}

fn holiday_base() -> (Vec<Op>, ShareId) {
    let mut r = Replica::create_share(
        &key(1),
        "holiday",
        "List",
        json!({"properties": {"name": "Holiday 2026"}}),
        T0,
    )
    .unwrap();
    r.author(
        &key(1),
        Action::Grant {
            member: peer(2),
            level: Level::Write,
        },
        T0 + 1,
    )
    .unwrap();
    r.author(
        &key(1),
        Action::Grant {
            member: peer(3),
            level: Level::Read,
        },
        T0 + 2,
    )
    .unwrap();
    (r.kept_ops().cloned().collect(), r.share())
}

fn add_item(node: &mut Node, item: &str, now: u64) -> Op {
    let me = node.me;
    let r = node.shares.values_mut().next().unwrap();
    let (op, _) = r
        .author(
            &key(me),
            Action::ListAdd {
                list: "holiday".into(),
                item: item.into(),
            },
            now,
        )
        .unwrap();
    node.commit();
    op
}

#[test]
fn frames_round_trip_and_bad_frames_are_refused() {
    let share = OpId([3; 32]);
    let messages = [
        Message::Reconcile {
            share,
            payload: vec![0x61, 1, 2],
        },
        Message::ReconcileReply {
            share,
            payload: vec![0x61],
        },
        Message::Unknown { share },
        Message::Want {
            share,
            ids: vec![OpId([1; 32]), OpId([2; 32])],
        },
        Message::Ops {
            share,
            ops: vec![vec![1, 2, 3], vec![]],
        },
    ];
    for m in messages {
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
    }
    assert_eq!(Message::decode(&[9; 33]), Err(SyncError::Tag(9)));
    assert!(matches!(
        Message::decode(&vec![0; MAX_FRAME_BYTES + 1]),
        Err(SyncError::FrameTooLarge(_))
    ));
    let mut want = vec![4];
    want.extend([0; 32]);
    want.extend([0xff, 0xff, 0x03]); // 65 535 ids
    assert!(matches!(
        Message::decode(&want),
        Err(SyncError::Wire(WireError::TooLarge { .. }))
    ));
    let mut trailing = Message::Unknown { share }.encode();
    trailing.push(0);
    assert_eq!(
        Message::decode(&trailing),
        Err(SyncError::Wire(WireError::Trailing(1)))
    );
}

#[test]
fn the_demo_bob_writes_while_alice_is_away_carol_reads_it_from_bob_revoked_carol_gets_nothing() {
    let (base, share) = holiday_base();
    let mut alice = Node::new(1, &base, share);
    let mut bob = Node::new(2, &base, share);
    let mut carol = Node::new(3, &base, share);
    // Alice is offline; bob adds an item; carol syncs with bob.
    let rome = add_item(&mut bob, "rome", T0 + 10);
    let (from_carol, _, _) = sync_pair(&mut carol, &mut bob, share, T0 + 20);
    assert!(
        matches!(from_carol[..], [Event::Reconciled { received: 1, .. }]),
        "{from_carol:?}"
    );
    assert_eq!(
        carol.replica().resource("holiday").unwrap()["items"],
        json!(["rome"])
    );
    // Alice comes back and syncs with carol (a reader forwards bob's op, checked by signature).
    sync_pair(&mut alice, &mut carol, share, T0 + 30);
    assert_eq!(alice.replica().state().hash(), bob.replica().state().hash());
    assert!(alice.replica().live_op(&rome.id()).is_some());
    // Alice revokes carol; bob learns it from alice.
    alice
        .shares
        .get_mut(&share)
        .unwrap()
        .author(
            &key(1),
            Action::Revoke {
                member: peer(3),
                after_seq: 0,
                also: vec![],
            },
            T0 + 40,
        )
        .unwrap();
    alice.commit();
    sync_pair(&mut alice, &mut bob, share, T0 + 50);
    assert_eq!(bob.replica().level(&peer(3)), None);
    add_item(&mut bob, "paris", T0 + 60);
    // Carol asks both: both answer as if the share did not exist, and send no op.
    for other in [&mut alice, &mut bob] {
        let (carol_events, other_events, _) = sync_pair(&mut carol, other, share, T0 + 70);
        assert_eq!(carol_events, vec![Event::Unknown { share }]);
        assert!(other_events.is_empty(), "{other_events:?}");
    }
    assert_eq!(
        carol.replica().resource("holiday").unwrap()["items"],
        json!(["rome"])
    );
    let mut push = SyncPeer::new(peer(3), MIN_FRAME_LIMIT);
    let paris = bob
        .replica()
        .kept_ops()
        .find(|op| matches!(&op.body().action, Action::ListAdd { item, .. } if item == "paris"))
        .unwrap()
        .clone();
    push.push(&paris, &mut bob.shares);
    assert_eq!(push.poll_transmit(), None, "no push to a revoked member");
}

#[test]
fn pushes_in_a_row_travel_as_one_frame_and_keep_their_place_among_other_messages() {
    let (base, share) = holiday_base();
    let mut alice = Node::new(1, &base, share);
    let mut bob = Node::new(2, &base, share);
    let ops: Vec<Op> = (0..300)
        .map(|i| add_item(&mut alice, &format!("item{i}"), T0 + 10 + i))
        .collect();
    let mut to_bob = SyncPeer::new(peer(2), MIN_FRAME_LIMIT);
    for op in &ops[..200] {
        to_bob.push(op, &mut alice.shares);
    }
    // A reconciliation started after the first 200 pushes goes after them, and the last 100
    // pushes after it.
    to_bob.start(share, &mut alice.shares, T0 + 500).unwrap();
    for op in &ops[200..] {
        to_bob.push(op, &mut alice.shares);
    }
    let frames: Vec<Message> = std::iter::from_fn(|| to_bob.poll_transmit())
        .map(|f| Message::decode(&f).unwrap())
        .collect();
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert!(matches!(&frames[0], Message::Ops { ops, .. } if ops.len() == 200));
    assert!(matches!(&frames[1], Message::Reconcile { .. }));
    assert!(matches!(&frames[2], Message::Ops { ops, .. } if ops.len() == 100));
    let mut from_alice = SyncPeer::new(peer(1), MIN_FRAME_LIMIT);
    let frame = Message::Ops {
        share,
        ops: ops.iter().map(|op| op.wire().to_vec()).collect(),
    }
    .encode();
    from_alice.handle(&frame, &mut bob.shares, T0 + 500);
    bob.commit();
    assert_eq!(
        bob.replica().resource("holiday").unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        300
    );
}

#[test]
fn a_non_member_learns_nothing_not_even_that_the_share_exists() {
    let (base, share) = holiday_base();
    let mut alice = Node::new(1, &base, share);
    let elsewhere = OpId([0xee; 32]);
    let mut answers = Vec::new();
    for asked in [share, elsewhere] {
        for message in [
            Message::Reconcile {
                share: asked,
                payload: vec![0x61],
            },
            Message::Want {
                share: asked,
                ids: vec![asked],
            },
        ] {
            let mut side = SyncPeer::new(peer(4), MIN_FRAME_LIMIT);
            side.handle(&message.encode(), &mut alice.shares, T0);
            let frames: Vec<Message> = std::iter::from_fn(|| side.poll_transmit())
                .map(|f| Message::decode(&f).unwrap())
                .collect();
            assert_eq!(frames, vec![Message::Unknown { share: asked }]);
            answers.push(frames);
        }
    }
    // Ops pushed by a stranger are ignored without an answer.
    let (stranger_op, _) = Replica::create_share(&key(4), "x", "T", json!({}), T0)
        .map(|r| {
            let op = r.kept_ops().next().unwrap().clone();
            (op, r)
        })
        .unwrap();
    let mut side = SyncPeer::new(peer(4), MIN_FRAME_LIMIT);
    side.handle(
        &Message::Ops {
            share,
            ops: vec![stranger_op.wire().to_vec()],
        }
        .encode(),
        &mut alice.shares,
        T0,
    );
    assert_eq!(side.poll_transmit(), None);
    assert_eq!(alice.replica().kept_ops().count(), base.len());
}

/// One peer's reconciliations hold coded symbols between batches for at most
/// `MAX_DECODING_SESSIONS` shares at once: past it, others let go of theirs (and go on with
/// negentropy's fingerprints; `reconcile`'s tests show that session still ends exact).
#[test]
fn a_peer_holds_symbols_for_a_bounded_number_of_sessions() {
    let mut rng = StdRng::seed_from_u64(5);
    let item = |rng: &mut StdRng| crate::reconcile::Item {
        timestamp: T0 + rng.gen_range(0..1_000),
        id: OpId(rng.r#gen()),
    };
    let common: Vec<_> = (0..300).map(|_| item(&mut rng)).collect();
    let theirs: crate::reconcile::Items = common
        .iter()
        .copied()
        .chain((0..40).map(|_| item(&mut rng)))
        .collect();
    let ours: crate::reconcile::Items = common.into_iter().collect();
    let mut side = SyncPeer::new(peer(2), MIN_FRAME_LIMIT);
    for n in 0..=MAX_DECODING_SESSIONS as u8 + 3 {
        let opening = Reconciler::new(MIN_FRAME_LIMIT, true)
            .unwrap()
            .initiate(&theirs)
            .unwrap();
        let mut responder = Reconciler::new(MIN_FRAME_LIMIT, false).unwrap();
        responder.respond(&ours, &opening).unwrap();
        assert!(
            responder.holds_symbols(),
            "40 differences need a second batch"
        );
        let share = OpId([n; 32]);
        side.responders.insert(share, responder);
        side.bound_decoding_sessions(share);
        let holding = side
            .responders
            .values()
            .filter(|r| r.holds_symbols())
            .count();
        assert_eq!(holding, (usize::from(n) + 1).min(MAX_DECODING_SESSIONS));
    }
}

#[test]
fn a_peer_that_claims_ops_and_never_sends_them_is_given_up_on() {
    let (base, share) = holiday_base();
    let mut alice = Node::new(1, &base, share);
    let mut liar_items = alice.replica().items().iter().copied().collect::<Vec<_>>();
    liar_items.push(crate::reconcile::Item {
        timestamp: T0 + 5,
        id: OpId([0x42; 32]),
    });
    let liar_items: crate::reconcile::Items = liar_items.into_iter().collect();
    let mut side = SyncPeer::new(peer(2), MIN_FRAME_LIMIT);
    side.start(share, &mut alice.shares, T0).unwrap();
    let mut liar = Reconciler::new(MIN_FRAME_LIMIT, false).unwrap();
    let mut now = T0;
    while let Some(frame) = side.poll_transmit() {
        match Message::decode(&frame).unwrap() {
            Message::Reconcile { payload, .. } => {
                let reply = liar.respond(&liar_items, &payload).unwrap();
                now += 1;
                side.handle(
                    &Message::ReconcileReply {
                        share,
                        payload: reply,
                    }
                    .encode(),
                    &mut alice.shares,
                    now,
                );
            }
            Message::Want { ids, .. } => assert_eq!(ids, vec![OpId([0x42; 32])]),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(side.poll_event(), None);
    let deadline = side.poll_timeout().unwrap();
    assert_eq!(deadline, now + WANT_TIMEOUT_MS);
    side.handle_timeout(deadline - 1);
    assert_eq!(side.poll_event(), None);
    side.handle_timeout(deadline);
    assert!(matches!(
        side.poll_event(),
        Some(Event::Reconciled {
            missing: 1,
            received: 0,
            ..
        })
    ));
    assert_eq!(side.poll_timeout(), None);
}

/// The pure core under a deterministic simulation: five replicas, random ops of every kind,
/// random partitions and heals, crashes and restarts, grants and revocations. After a final
/// heal every current member holds the same state, members and live set. Seeds: 1,000 here,
/// `ALLPEERS_SIM_SEEDS=n` for a long run.
#[test]
fn five_replicas_converge_through_partitions_crashes_and_revocations() {
    let seeds: u64 = std::env::var("ALLPEERS_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for seed in 0..seeds {
        simulate(seed);
    }
}

fn simulate(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut base, share) = holiday_base();
    // Dave admin, erin writer.
    let mut owner = Replica::new(share);
    for op in &base {
        owner.insert(op.clone(), T0).unwrap();
    }
    owner
        .author(
            &key(1),
            Action::Grant {
                member: peer(4),
                level: Level::Admin,
            },
            T0 + 3,
        )
        .unwrap();
    owner
        .author(
            &key(1),
            Action::Grant {
                member: peer(5),
                level: Level::Write,
            },
            T0 + 4,
        )
        .unwrap();
    base = owner.kept_ops().cloned().collect();
    let mut nodes: Vec<Node> = (1..=5).map(|me| Node::new(me, &base, share)).collect();
    let mut now = T0 + 100;
    let mut links_up = [[true; 5]; 5];
    for step in 0..60 {
        now += rng.gen_range(1..50);
        if step % 12 == 0 {
            for (i, row) in links_up.iter_mut().enumerate() {
                for (j, up) in row.iter_mut().enumerate() {
                    *up = i == j || rng.gen_bool(0.5);
                }
            }
        }
        let n = rng.gen_range(0..5);
        match rng.gen_range(0..20) {
            0 => nodes[n].restart(now),
            1..=7 => {
                let m = rng.gen_range(0..5);
                if n != m && links_up[n.min(m)][n.max(m)] {
                    let (a, b) = two(&mut nodes, n, m);
                    sync_pair(a, b, share, now);
                }
            }
            k => {
                let me = nodes[n].me;
                let r = nodes[n].shares.get_mut(&share).unwrap();
                let target = peer(rng.gen_range(2..=5));
                let item = format!("i{}", rng.gen_range(0..4));
                let action = match k {
                    8 => Action::Grant {
                        member: target,
                        level: [Level::Read, Level::Write, Level::Admin][rng.gen_range(0..3)],
                    },
                    9 => Action::Revoke {
                        member: target,
                        after_seq: 0,
                        also: vec![],
                    },
                    10 => Action::ListAdd {
                        list: "holiday".into(),
                        item,
                    },
                    11 => Action::CreateInList {
                        resource: item,
                        kind: "Note".into(),
                        value: json!({"properties": {"text": rng.gen_range(0..9)}}),
                        list: "holiday".into(),
                    },
                    12 => {
                        let tags = r
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
                    13 => Action::Create {
                        resource: format!("note{}", rng.gen_range(0..3)),
                        kind: "Note".into(),
                        value: json!({"properties": {"text": rng.gen_range(0..9)}}),
                    },
                    14 => Action::Delete {
                        resource: ["note0", "note1", "note2", "i0"][rng.gen_range(0..4)].into(),
                    },
                    15 => Action::SetChild {
                        resource: "holiday".into(),
                        slot: "notes".into(),
                        key: format!("k{}", rng.gen_range(0..2)),
                        value: rng
                            .gen_bool(0.8)
                            .then(|| json!({"properties": {"v": rng.gen_range(0..9)}})),
                    },
                    16 => {
                        // Between two neighbours, as `lists.move` does, or a key a peer made up.
                        let order = r.state().list_order("holiday");
                        let at = rng.gen_range(0..=order.len());
                        let before = at.checked_sub(1).map(|i| order[i].1.as_str());
                        let after = order.get(at).map(|(_, key)| key.as_str());
                        let position = match crate::position::between(before, after) {
                            Some(key) if rng.gen_bool(0.8) => key,
                            _ => ["3", "5", "55"][rng.gen_range(0..3)].into(),
                        };
                        Action::ListMove {
                            list: "holiday".into(),
                            item,
                            position,
                        }
                    }
                    _ => Action::SetProperty {
                        resource: ["holiday", "note0", "note1"][rng.gen_range(0..3)].into(),
                        name: ["name", "x"][rng.gen_range(0..2)].into(),
                        value: json!(rng.gen_range(0..100)),
                    },
                };
                // Rejections (a reader writing, a revoked member granting) are part of the test.
                if rng.gen_bool(0.25) {
                    // Ops under one batch signature, as a share's creation signs a list.
                    let also = Action::SetProperty {
                        resource: "holiday".into(),
                        name: "y".into(),
                        value: json!(rng.gen_range(0..100)),
                    };
                    r.author_many(&key(me), [action, also], now).unwrap();
                } else {
                    r.author(&key(me), action, now).unwrap();
                }
                nodes[n].commit();
            }
        }
    }
    // Heal: everyone up, rounds of pairwise sync until nothing moves.
    for round in 0.. {
        assert!(
            round < 10,
            "seed {seed}: no convergence after 10 heal rounds"
        );
        let before: Vec<_> = nodes.iter().map(|n| summary(n.replica())).collect();
        for i in 0..5 {
            for j in i + 1..5 {
                now += 1;
                let (a, b) = two(&mut nodes, i, j);
                sync_pair(a, b, share, now);
            }
        }
        let after: Vec<_> = nodes.iter().map(|n| summary(n.replica())).collect();
        if before == after {
            break;
        }
    }
    // A restart loses nothing the store acknowledged.
    let victim = rng.gen_range(0..5);
    let before = summary(nodes[victim].replica());
    nodes[victim].restart(now);
    assert_eq!(
        summary(nodes[victim].replica()),
        before,
        "seed {seed}: restart changed the replica"
    );
    // Every current member (in the owner's view, which all members share now) agrees.
    let members: BTreeSet<PeerId> = nodes[0].replica().members().keys().copied().collect();
    let outcomes: BTreeSet<_> = nodes
        .iter()
        .filter(|n| members.contains(&peer(n.me)))
        .map(|n| summary(n.replica()))
        .collect();
    assert_eq!(outcomes.len(), 1, "seed {seed}: members disagree");
}

type Summary = (String, BTreeMap<PeerId, Level>, Vec<OpId>);

fn summary(r: &Replica) -> Summary {
    (
        r.state().hash().to_hex().to_string(),
        r.members(),
        r.items().iter().map(|i| i.id).collect(),
    )
}

fn two(nodes: &mut [Node], i: usize, j: usize) -> (&mut Node, &mut Node) {
    assert_ne!(i, j);
    if i < j {
        let (left, right) = nodes.split_at_mut(j);
        (&mut left[i], &mut right[0])
    } else {
        let (left, right) = nodes.split_at_mut(i);
        (&mut right[0], &mut left[j])
    }
}

/// Two replicas sharing 3,000 ops, each with a few of its own: reconciliation finds exactly the
/// differences in few round trips, with bytes following the differences, not the 3,000.
#[test]
fn two_replicas_with_thousands_of_ops_and_a_few_differences_converge_cheaply() {
    let (base, share) = holiday_base();
    let mut source = Replica::new(share);
    for op in &base {
        source.insert(op.clone(), T0).unwrap();
    }
    for i in 0..3_000u64 {
        let author = [1, 2][(i % 2) as usize];
        source
            .author(
                &key(author),
                Action::ListAdd {
                    list: "holiday".into(),
                    item: format!("i{i}"),
                },
                T0 + 10 + i,
            )
            .unwrap();
    }
    let mut common: Vec<Op> = source.kept_ops().cloned().collect();
    common.sort_by_key(Op::order_key);
    let node = |me: u8| {
        let mut r = Replica::new(share);
        for op in &common {
            r.insert_verified(op.clone(), T0 + 100_000).unwrap();
        }
        Node {
            me,
            shares: BTreeMap::from([(share, r)]),
            store: MemoryStore::default(),
        }
    };
    let (mut alice, mut bob) = (node(1), node(2));
    for i in 0..3 {
        add_item(&mut alice, &format!("a{i}"), T0 + 200_000 + i);
        add_item(&mut bob, &format!("b{i}"), T0 + 200_000 + i);
    }
    let mut a_side = SyncPeer::new(peer(2), MAX_MESSAGE_BYTES);
    let mut b_side = SyncPeer::new(peer(1), MAX_MESSAGE_BYTES);
    a_side.start(share, &mut alice.shares, T0).unwrap();
    let (mut reconcile_bytes, mut op_bytes) = (0, 0);
    let mut count = |frame: &[u8]| match Message::decode(frame).unwrap() {
        Message::Ops { .. } => op_bytes += frame.len(),
        _ => reconcile_bytes += frame.len(),
    };
    loop {
        let mut moved = false;
        while let Some(frame) = a_side.poll_transmit() {
            count(&frame);
            b_side.handle(&frame, &mut bob.shares, T0 + 300_000);
            moved = true;
        }
        while let Some(frame) = b_side.poll_transmit() {
            count(&frame);
            a_side.handle(&frame, &mut alice.shares, T0 + 300_000);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    let event = a_side.poll_event();
    let Some(Event::Reconciled {
        round_trips,
        sent: 3,
        received: 3,
        missing: 0,
        ..
    }) = event
    else {
        panic!("{event:?}");
    };
    eprintln!(
        "{round_trips} round trips, {reconcile_bytes} B of reconciliation, {op_bytes} B of ops"
    );
    assert!(round_trips <= 3, "{round_trips} round trips");
    // Six differences: a few fingerprint levels and id lists, far below 3,000 ids (96 KB).
    assert!(
        reconcile_bytes < 8_000,
        "{reconcile_bytes} bytes of reconciliation"
    );
    assert!(op_bytes < 6 * 600, "{op_bytes} bytes of ops");
    assert_eq!(alice.replica().state().hash(), bob.replica().state().hash());
    assert_eq!(
        alice.replica().resource("holiday").unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        3_006
    );

    // A push reaches the member at once.
    let op = add_item(&mut alice, "pushed", T0 + 400_000);
    a_side.push(&op, &mut alice.shares);
    let frame = a_side.poll_transmit().unwrap();
    b_side.handle(&frame, &mut bob.shares, T0 + 400_001);
    assert_eq!(alice.replica().state().hash(), bob.replica().state().hash());
}

#[test]
fn a_share_just_accepted_fills_from_the_member_that_offered_it() {
    let (base, share) = holiday_base();
    let mut alice = Node::new(1, &base, share);
    // Bob accepted the offer: an empty replica, no genesis yet.
    let mut bob = Node::new(2, &[], share);
    assert_eq!(bob.replica().owner(), None);
    sync_pair(&mut alice, &mut bob, share, T0 + 10);
    assert_eq!(bob.replica().state().hash(), alice.replica().state().hash());
    assert_eq!(bob.replica().level(&peer(2)), Some(Level::Write));
    // Now that bob knows the members, a stranger learns nothing from him either.
    let mut side = SyncPeer::new(peer(4), MIN_FRAME_LIMIT);
    side.handle(
        &Message::Want {
            share,
            ids: vec![share],
        }
        .encode(),
        &mut bob.shares,
        T0 + 11,
    );
    let frames: Vec<Message> = std::iter::from_fn(|| side.poll_transmit())
        .map(|f| Message::decode(&f).unwrap())
        .collect();
    assert_eq!(frames, vec![Message::Unknown { share }]);
}

/// `n` list adds by `node`'s owner at `now`, committed once.
fn author_adds(node: &mut Node, prefix: &str, n: usize, now: u64) -> Vec<Op> {
    let me = node.me;
    let r = node.shares.values_mut().next().unwrap();
    let ops = (0..n)
        .map(|i| {
            let add = Action::ListAdd {
                list: "holiday".into(),
                item: format!("{prefix}{i}"),
            };
            r.author(&key(me), add, now).unwrap().0
        })
        .collect();
    node.commit();
    ops
}

#[test]
fn a_member_flooding_pushes_is_held_to_the_limit_and_nothing_else_is_lost() {
    // The limits scaled down (per second, burst): per share, and for the peer in all.
    let (rate, burst) = (20, 100);
    let limited = |who: u8| {
        let mut session = SyncPeer::new(peer(who), MAX_MESSAGE_BYTES);
        session.limit_pushes((rate, burst), (2 * rate, 2 * burst));
        session
    };
    let (base, share) = holiday_base();
    let mut alice = Node::new(1, &base, share);
    let mut bob = Node::new(2, &base, share);
    let mut carol = Node::new(3, &base, share);
    let now = T0 + 1_000;
    // Bob floods: more ops than the burst, pushed unasked in one go.
    let flood = burst as usize + 150;
    let flooded = author_adds(&mut bob, "bob", flood, now);
    let mut bob_to_carol = SyncPeer::new(peer(3), MAX_MESSAGE_BYTES);
    for op in &flooded {
        bob_to_carol.push(op, &mut bob.shares);
    }
    // Alice, another member, pushes a few ops at the same time.
    let mut alice_to_carol = SyncPeer::new(peer(3), MAX_MESSAGE_BYTES);
    for op in author_adds(&mut alice, "alice", 10, now) {
        alice_to_carol.push(&op, &mut alice.shares);
    }
    let mut from_bob = limited(2);
    let mut from_alice = limited(1);
    let items = |node: &Node| {
        node.replica().resource("holiday").unwrap()["items"]
            .as_array()
            .unwrap()
            .len()
    };
    while let Some(frame) = bob_to_carol.poll_transmit() {
        from_bob.handle(&frame, &mut carol.shares, now);
    }
    while let Some(frame) = alice_to_carol.poll_transmit() {
        from_alice.handle(&frame, &mut carol.shares, now);
    }
    carol.commit();
    // The burst, and every one of alice's ops.
    assert_eq!(items(&carol), burst as usize + 10);
    let events: Vec<Event> = std::iter::from_fn(|| from_bob.poll_event()).collect();
    assert_eq!(
        events,
        vec![Event::Throttled {
            share,
            dropped: 150
        }]
    );
    assert!(
        std::iter::from_fn(|| from_alice.poll_event())
            .next()
            .is_none()
    );

    // Two seconds later bob pushes again: only two seconds' worth is read.
    let later = now + 2_000;
    let more = author_adds(&mut bob, "more", 100, later);
    let frame = Message::Ops {
        share,
        ops: more.iter().map(|op| op.wire().to_vec()).collect(),
    }
    .encode();
    // The reconciliation the throttling started is still out: its `Want`s are what carol
    // reads at her own pace, later.
    let asked: Vec<Vec<u8>> = std::iter::from_fn(|| from_bob.poll_transmit()).collect();
    assert!(matches!(
        Message::decode(&asked[0]).unwrap(),
        Message::Reconcile { .. }
    ));
    from_bob.handle(&frame, &mut carol.shares, later);
    carol.commit();
    assert_eq!(items(&carol), burst as usize + 10 + 2 * rate as usize);

    // The reconciliation fetches everything dropped: nothing is lost, it came at carol's pace.
    let mut pending = asked;
    let mut bob_side = SyncPeer::new(peer(3), MAX_MESSAGE_BYTES);
    loop {
        let mut moved = false;
        for frame in pending.drain(..) {
            bob_side.handle(&frame, &mut bob.shares, later);
            moved = true;
        }
        while let Some(frame) = bob_side.poll_transmit() {
            from_bob.handle(&frame, &mut carol.shares, later);
            carol.commit();
            moved = true;
        }
        pending.extend(std::iter::from_fn(|| from_bob.poll_transmit()));
        if !moved {
            break;
        }
    }
    assert_eq!(items(&carol), flood + 100 + 10);
    assert!(
        std::iter::from_fn(|| from_bob.poll_event())
            .any(|e| matches!(e, Event::Reconciled { missing: 0, .. }))
    );
}

/// The waiting room through a session: ops pushed before the membership op they name wait
/// (nothing of them shows), the session asks for that parent at once, ahead of everything else
/// it will want, and once the parent is here every waiting op is applied.
#[test]
fn ops_ahead_of_their_parent_wait_and_the_parent_is_asked_first() {
    let (base, share) = holiday_base();
    let mut alice = Node::new(1, &base, share);
    // Carol (a reader) holds only the genesis: the grants are what bob's ops name.
    let genesis: Vec<Op> = base.iter().filter(|op| op.id() == share).cloned().collect();
    let mut carol = Node::new(3, &genesis, share);
    let bob_ops: Vec<Op> = (0..20)
        .map(|i| {
            let r = alice.shares.get_mut(&share).unwrap();
            let add = Action::ListAdd {
                list: "holiday".into(),
                item: format!("b{i}"),
            };
            r.author(&key(2), add, T0 + 10 + i).unwrap().0
        })
        .collect();
    alice.commit();
    let parents: BTreeSet<OpId> = bob_ops
        .iter()
        .flat_map(|op| op.body().parents.clone())
        .collect();
    assert!(
        parents.iter().all(|p| *p != share),
        "bob's ops name a grant"
    );

    let now = T0 + 100;
    let mut alice_side = SyncPeer::new(peer(3), MIN_FRAME_LIMIT);
    let mut carol_side = SyncPeer::new(peer(1), MIN_FRAME_LIMIT);
    carol_side.start(share, &mut carol.shares, now).unwrap();
    let reconcile = carol_side.poll_transmit().unwrap();
    // Alice forwards bob's ops before carol's reconciliation reaches her.
    for op in &bob_ops {
        alice_side.push(op, &mut alice.shares);
    }
    while let Some(frame) = alice_side.poll_transmit() {
        carol_side.handle(&frame, &mut carol.shares, now);
        carol.commit();
    }
    assert_eq!(carol.replica().pending(), (bob_ops.len(), 0));
    assert_eq!(
        carol.replica().resource("holiday").unwrap()["items"],
        json!([])
    );
    let asked: Vec<Message> = std::iter::from_fn(|| carol_side.poll_transmit())
        .map(|f| Message::decode(&f).unwrap())
        .collect();
    let [Message::Want { ids, .. }] = asked.as_slice() else {
        panic!("one Want, for the parents: {asked:?}");
    };
    assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), parents);

    // The rest of the exchange: the parents arrive, everything waiting is applied.
    let mut frames = vec![(true, reconcile)];
    frames.extend(asked.iter().map(|m| (true, m.encode())));
    while !frames.is_empty() {
        for (to_alice, frame) in std::mem::take(&mut frames) {
            if to_alice {
                alice_side.handle(&frame, &mut alice.shares, now);
                alice.commit();
            } else {
                carol_side.handle(&frame, &mut carol.shares, now);
                carol.commit();
            }
        }
        frames.extend(std::iter::from_fn(|| alice_side.poll_transmit()).map(|f| (false, f)));
        frames.extend(std::iter::from_fn(|| carol_side.poll_transmit()).map(|f| (true, f)));
    }
    assert_eq!(carol.replica().pending(), (0, 0));
    assert_eq!(
        carol.replica().state().hash(),
        alice.replica().state().hash()
    );
    let items = carol.replica().resource("holiday").unwrap()["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(bob_ops.len()));
    let events: Vec<Event> = std::iter::from_fn(|| carol_side.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Reconciled { missing: 0, .. })),
        "{events:?}"
    );
}

/// A member in the middle of fetching a share from us (its `Want`s) gets nothing unasked from
/// our own periodic reconciliation of that share: it asks for what it lacks itself.
#[test]
fn our_reconciliation_sends_nothing_unasked_to_a_member_that_is_fetching() {
    let (base, share) = holiday_base();
    let mut alice = Node::new(1, &base, share);
    let mut carol = Node::new(3, &base, share);
    let added = author_adds(&mut alice, "a", 50, T0 + 10);
    let now = T0 + 100;
    let mut alice_side = SyncPeer::new(peer(3), MIN_FRAME_LIMIT);
    let mut carol_side = SyncPeer::new(peer(1), MIN_FRAME_LIMIT);
    let ops_in = |frames: &[Vec<u8>]| -> usize {
        frames
            .iter()
            .map(|f| match Message::decode(f).unwrap() {
                Message::Ops { ops, .. } => ops.len(),
                _ => 0,
            })
            .sum()
    };
    // Carol reconciles and asks for the 50 ops; alice answers (not delivered yet).
    carol_side.start(share, &mut carol.shares, now).unwrap();
    let mut to_alice: Vec<Vec<u8>> = std::iter::from_fn(|| carol_side.poll_transmit()).collect();
    while !to_alice.is_empty() {
        for frame in std::mem::take(&mut to_alice) {
            alice_side.handle(&frame, &mut alice.shares, now);
        }
        let to_carol: Vec<Vec<u8>> = std::iter::from_fn(|| alice_side.poll_transmit()).collect();
        if ops_in(&to_carol) > 0 {
            assert_eq!(ops_in(&to_carol), added.len(), "the answer to carol's Want");
            break;
        }
        for frame in to_carol {
            carol_side.handle(&frame, &mut carol.shares, now);
        }
        to_alice = std::iter::from_fn(|| carol_side.poll_transmit()).collect();
    }
    // Alice's periodic round meanwhile: carol lacks the same 50 ops, and is fetching them.
    alice_side.start(share, &mut alice.shares, now + 1).unwrap();
    let mut unasked = 0;
    let mut to_carol: Vec<Vec<u8>> = std::iter::from_fn(|| alice_side.poll_transmit()).collect();
    while !to_carol.is_empty() {
        for frame in std::mem::take(&mut to_carol) {
            carol_side.handle(&frame, &mut carol.shares, now + 1);
        }
        let replies: Vec<Vec<u8>> = std::iter::from_fn(|| carol_side.poll_transmit())
            .filter(|f| matches!(Message::decode(f), Ok(Message::ReconcileReply { .. })))
            .collect();
        for frame in replies {
            alice_side.handle(&frame, &mut alice.shares, now + 1);
        }
        to_carol = std::iter::from_fn(|| alice_side.poll_transmit()).collect();
        unasked += ops_in(&to_carol);
    }
    assert_eq!(unasked, 0, "no op went unasked to a fetching member");
    // Once the fetch is long over, a round sends what the peer lacks as before.
    let later = now + WANT_TIMEOUT_MS + 1;
    let more = author_adds(&mut alice, "b", 3, later);
    alice_side.start(share, &mut alice.shares, later).unwrap();
    let mut sent = 0;
    let mut to_carol: Vec<Vec<u8>> = std::iter::from_fn(|| alice_side.poll_transmit()).collect();
    while !to_carol.is_empty() {
        for frame in std::mem::take(&mut to_carol) {
            carol_side.handle(&frame, &mut carol.shares, later);
        }
        let replies: Vec<Vec<u8>> = std::iter::from_fn(|| carol_side.poll_transmit())
            .filter(|f| matches!(Message::decode(f), Ok(Message::ReconcileReply { .. })))
            .collect();
        for frame in replies {
            alice_side.handle(&frame, &mut alice.shares, later);
        }
        to_carol = std::iter::from_fn(|| alice_side.poll_transmit()).collect();
        sent += ops_in(&to_carol);
    }
    assert!(sent >= more.len(), "{sent}");
}

/// A peer whose session ends (its connection went) and comes back gets no fresh burst: the
/// next session goes on with the budgets the last one left.
#[test]
fn a_resumed_session_keeps_the_push_budgets_of_the_last() {
    let (rate, burst) = (20, 100);
    let (base, share) = holiday_base();
    let mut bob = Node::new(2, &base, share);
    let mut carol = Node::new(3, &base, share);
    let now = T0 + 1_000;
    let flood = |bob: &mut Node, prefix: &str, n: usize| {
        let mut to_carol = SyncPeer::new(peer(3), MAX_MESSAGE_BYTES);
        for op in author_adds(bob, prefix, n, now) {
            to_carol.push(&op, &mut bob.shares);
        }
        std::iter::from_fn(move || to_carol.poll_transmit()).collect::<Vec<_>>()
    };
    let dropped = |session: &mut SyncPeer| -> usize {
        std::iter::from_fn(|| session.poll_event())
            .map(|e| match e {
                Event::Throttled { dropped, .. } => dropped,
                _ => 0,
            })
            .sum()
    };
    let mut from_bob = SyncPeer::new(peer(2), MAX_MESSAGE_BYTES);
    from_bob.limit_pushes((rate, burst), (2 * rate, 2 * burst));
    for frame in flood(&mut bob, "first", burst as usize) {
        from_bob.handle(&frame, &mut carol.shares, now);
    }
    assert_eq!(dropped(&mut from_bob), 0, "the burst is read");
    // The connection goes and comes back at once: the burst is spent.
    let mut resumed = SyncPeer::resume(peer(2), MAX_MESSAGE_BYTES, from_bob.into_budgets());
    for frame in flood(&mut bob, "again", 10) {
        resumed.handle(&frame, &mut carol.shares, now);
    }
    assert_eq!(dropped(&mut resumed), 10);
}
