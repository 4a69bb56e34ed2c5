//! Replication core benchmarks, each against a baseline run side by side:
//! 1. reconciliation (negentropy) vs the naive exchange of every id, for 10k..1M ops and
//!    0..1000 differences: round trips, bytes each way, time;
//! 2. merge throughput (decode, verify, judge, merge) vs signature verification alone, and
//!    signature verification one by one (`verify_strict`, the check before batches) vs in
//!    batches of several sizes (`signature::verify_all`) vs `verify_many` (batches on threads);
//! 3. initial sync of a share to a fresh peer through two sync sessions vs merging the same ops
//!    locally;
//! 4. one edit reaching two members through the sessions (in process: no network), p50/p99.
//!
//! `cargo bench -p allpeers-replica` (`-- quick` for a short run, `-- reconcile` for part 1 only,
//! `-- signatures` for signature verification only).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use allpeers_model::id::PeerId;
use allpeers_replica::op::{SIGNATURE_DOMAIN, verify_many};
use allpeers_replica::reconcile::{self, Item, Items, MAX_MESSAGE_BYTES};
use allpeers_replica::signature::{self, Keys, Signed};
use allpeers_replica::sync::{Event, SyncPeer};
use allpeers_replica::{Action, Level, Op, OpId, Replica, ShareId};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const T0: u64 = 1_764_590_000_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn peer(n: u8) -> PeerId {
    PeerId::from_public_key(key(n).verifying_key().to_bytes())
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    if std::env::args().any(|a| a == "signatures") {
        signatures(&signed_ops(if quick { 5_000 } else { 50_000 }));
        return;
    }
    reconciliation(quick);
    if std::env::args().any(|a| a == "reconcile") {
        return;
    }
    let ops = signed_ops(if quick { 5_000 } else { 50_000 });
    signatures(&ops);
    merge(&ops);
    initial_sync(&ops);
    edit_latency(if quick { 200 } else { 2_000 });
}

fn reconciliation(quick: bool) {
    println!(
        "## Reconciliation (coded symbols, then negentropy) vs sending every id (frame limit {MAX_MESSAGE_BYTES} B)"
    );
    println!(
        "| ops | differences | round trips | bytes up | bytes down | time | naive bytes | naive / ours |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let sizes: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    let mut rng = StdRng::seed_from_u64(1);
    for &n in sizes {
        let common: Vec<Item> = (0..n)
            .map(|i| Item {
                timestamp: T0 + i as u64 * 7,
                id: OpId(rng.r#gen()),
            })
            .collect();
        for differences in [0usize, 1, 10, 100, 1_000, 10_000] {
            // Half the differences on each side, at random places in time.
            let mut a: Vec<Item> = common.clone();
            let mut b: Vec<Item> = common.clone();
            for d in 0..differences {
                let extra = Item {
                    timestamp: T0 + rng.gen_range(0..n as u64 * 7),
                    id: OpId(rng.r#gen()),
                };
                if d % 2 == 0 {
                    a.push(extra)
                } else {
                    b.push(extra)
                }
            }
            let a: Items = a.into_iter().collect();
            let b: Items = b.into_iter().collect();
            // Build the prefix sums before timing (the replica keeps them between sessions).
            let _ = reconcile::run(&a, &b, MAX_MESSAGE_BYTES).unwrap();
            let started = Instant::now();
            let run = reconcile::run(&a, &b, MAX_MESSAGE_BYTES).unwrap();
            let took = started.elapsed();
            assert_eq!(run.have.len() + run.need.len(), differences);
            // The naive baseline: one side sends all its ids, the other answers with the ids
            // the first lacks (and asks for the rest).
            let naive = 32 * (n + differences / 2) + 32 * differences;
            let ours = run.bytes_up + run.bytes_down;
            println!(
                "| {n} | {differences} | {} | {} | {} | {} | {naive} | {:.0}x |",
                run.round_trips,
                run.bytes_up,
                run.bytes_down,
                ms(took),
                naive as f64 / ours as f64
            );
        }
    }
    println!();
}

/// A share with `n` signed ops by two writers: creates of items, property edits, list adds.
fn signed_ops(n: usize) -> Vec<Op> {
    let mut r = Replica::create_share(&key(1), "list", "List", json!({}), T0).unwrap();
    r.author(
        &key(1),
        Action::Grant {
            member: peer(2),
            level: Level::Write,
        },
        T0 + 1,
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    for i in 0..n {
        let author = 1 + (i % 2) as u8;
        let resource = format!("item{}", i / 3);
        let action = match i % 3 {
            0 => Action::Create {
                resource,
                kind: "Link".into(),
                value: json!({"properties": {"url": format!("https://example.org/{i}"), "title": "a link"}}),
            },
            1 => Action::ListAdd {
                list: "list".into(),
                item: resource,
            },
            _ => Action::SetProperty {
                resource,
                name: "rating".into(),
                value: json!(rng.gen_range(0..5)),
            },
        };
        r.author(&key(author), action, T0 + 10 + i as u64).unwrap();
    }
    // In order-key order, as a store returns them and reconciliation delivers them (by time).
    let mut ops: Vec<Op> = r.kept_ops().cloned().collect();
    ops.sort_by_key(Op::order_key);
    ops
}

/// Signature verification alone: what an initial sync's receiver spends most of its time on.
/// CPU time (user + system, all threads), the best of 5, the variants taking turns: on a
/// machine loaded by other work, wall time says more about the others than about the code.
fn signatures(ops: &[Op]) {
    println!("## Signature verification ({} ops, two authors)", ops.len());
    let messages: Vec<Vec<u8>> = ops
        .iter()
        .map(|op| [SIGNATURE_DOMAIN, &op.id().0].concat())
        .collect();
    let parts: Vec<([u8; 32], [u8; 64])> = ops
        .iter()
        .map(|op| {
            let wire = op.wire();
            let signature: [u8; 64] = wire[wire.len() - 64..].try_into().unwrap();
            (*op.body().author.public_key(), signature)
        })
        .collect();
    let signed: Vec<Signed> = parts
        .iter()
        .zip(&messages)
        .map(|((key, signature), message)| Signed {
            key,
            message,
            signature,
        })
        .collect();
    let strict = || {
        let mut keys = BTreeMap::new();
        for s in &signed {
            let key = keys
                .entry(*s.key)
                .or_insert_with(|| VerifyingKey::from_bytes(s.key).unwrap());
            key.verify_strict(s.message, &Signature::from_bytes(s.signature))
                .unwrap();
        }
    };
    let single = || {
        let mut keys = Keys::default();
        for s in &signed {
            let verdict = signature::verify_all(std::slice::from_ref(s), &mut keys);
            assert!(verdict[0].is_ok());
        }
    };
    let batched = |size: usize| {
        let mut keys = Keys::default();
        for chunk in signed.chunks(size) {
            assert!(
                signature::verify_all(chunk, &mut keys)
                    .iter()
                    .all(Result::is_ok)
            );
        }
    };
    let many = || assert!(verify_many(ops).iter().all(|ok| *ok));
    let names = [
        "one by one, ed25519-dalek `verify_strict` (before)".to_string(),
        "one by one, `signature::verify_all` of one".to_string(),
        "batches of 8, `signature::verify_all`".to_string(),
        "batches of 32".to_string(),
        "batches of 64".to_string(),
        format!("batches of {} (`signature::BATCH`)", signature::BATCH),
        "`verify_many` (batches, up to 4 threads)".to_string(),
    ];
    let mut best = [(Duration::MAX, Duration::MAX); 7];
    for _ in 0..5 {
        for (i, b) in best.iter_mut().enumerate() {
            let (t, c) = (Instant::now(), cpu());
            match i {
                0 => strict(),
                1 => single(),
                2 => batched(8),
                3 => batched(32),
                4 => batched(64),
                5 => batched(signature::BATCH),
                _ => many(),
            }
            let (wall, used) = (t.elapsed(), cpu() - c);
            *b = (b.0.min(used), b.1.min(wall));
        }
    }
    println!("| | CPU | ops/s of CPU | CPU / before | wall |");
    println!("|---|---:|---:|---:|---:|");
    for (name, (used, wall)) in names.iter().zip(best) {
        println!(
            "| {name} | {} | {:.0} | {:.2}x | {} |",
            ms(used),
            rate(ops.len(), used),
            used.as_secs_f64() / best[0].0.as_secs_f64(),
            ms(wall)
        );
    }
    println!();
}

/// User + system time of the process, all threads (10 ms ticks).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn merge(ops: &[Op]) {
    println!(
        "## Merge throughput ({} ops: creates, list adds, property edits)",
        ops.len()
    );
    let share = share_of(ops);
    let wires: Vec<Vec<u8>> = ops.iter().map(|op| op.wire().to_vec()).collect();
    let verify = best_of(3, || {
        for w in &wires {
            Op::from_wire(w).unwrap();
        }
    });
    let full = best_of(3, || {
        let mut r = Replica::new(share);
        for w in &wires {
            r.receive(w, T0 + 10_000_000).unwrap();
        }
    });
    println!("| | time | ops/s |");
    println!("|---|---|---|");
    println!(
        "| decode + verify only (baseline) | {} | {:.0} |",
        ms(verify),
        rate(ops.len(), verify)
    );
    println!(
        "| decode + verify + judge + merge | {} | {:.0} |",
        ms(full),
        rate(ops.len(), full)
    );
    println!(
        "merge / verify-only time: {:.2}x",
        full.as_secs_f64() / verify.as_secs_f64()
    );
    println!();
}

fn share_of(ops: &[Op]) -> ShareId {
    ops.iter()
        .find(|op| op.body().parents.is_empty())
        .map(Op::id)
        .expect("the genesis is among the ops")
}

fn initial_sync(ops: &[Op]) {
    println!(
        "## Initial sync of {} ops to a fresh peer through two sync sessions",
        ops.len()
    );
    let share = share_of(ops);
    let mut source = Replica::new(share);
    for op in ops {
        source.receive(op.wire(), T0 + 10_000_000).unwrap();
    }
    let live = source.items().iter().count();
    let mut full: BTreeMap<ShareId, Replica> = BTreeMap::from([(share, source)]);
    // Baseline: the same ops merged locally.
    let baseline = best_of(3, || {
        let mut local = Replica::new(share);
        for op in ops {
            local.receive(op.wire(), T0 + 10_000_000).unwrap();
        }
    });
    let mut took = Duration::MAX;
    let mut outcome = (0, 0, 0);
    for _ in 0..3 {
        let (time, result) = sync_fresh_peer(ops, share, &mut full);
        took = took.min(time);
        outcome = result;
    }
    let (up, down, rounds) = outcome;
    println!("| | time | bytes up | bytes down |");
    println!("|---|---|---|---|");
    println!("| merge locally (baseline) | {} | | |", ms(baseline));
    println!(
        "| sync to a fresh peer ({live} live ops, {rounds} reconciliation round trips) | {} | {up} | {down} |",
        ms(took)
    );
    println!(
        "sync / local merge time: {:.2}x",
        took.as_secs_f64() / baseline.as_secs_f64()
    );
    println!();
}

/// Syncs a fresh peer (who knows only the genesis and the grants: the invitation) from `full`.
fn sync_fresh_peer(
    ops: &[Op],
    share: ShareId,
    full: &mut BTreeMap<ShareId, Replica>,
) -> (Duration, (usize, usize, usize)) {
    let mut bob = Replica::new(share);
    for op in ops
        .iter()
        .filter(|op| op.body().parents.is_empty() || op.body().action.is_membership())
    {
        bob.receive(op.wire(), T0 + 10_000_000).unwrap();
    }
    let mut fresh: BTreeMap<ShareId, Replica> = BTreeMap::from([(share, bob)]);
    let started = Instant::now();
    let mut bob_side = SyncPeer::new(peer(1), MAX_MESSAGE_BYTES);
    let mut alice_side = SyncPeer::new(peer(2), MAX_MESSAGE_BYTES);
    bob_side.start(share, &mut fresh, T0).unwrap();
    let (mut up, mut down) = (0usize, 0usize);
    loop {
        let mut moved = false;
        while let Some(f) = bob_side.poll_transmit() {
            up += f.len();
            alice_side.handle(&f, full, T0);
            moved = true;
        }
        while let Some(f) = alice_side.poll_transmit() {
            down += f.len();
            bob_side.handle(&f, &mut fresh, T0);
            moved = true;
        }
        if !moved {
            break;
        }
    }
    let took = started.elapsed();
    let event = bob_side.poll_event();
    assert!(
        matches!(event, Some(Event::Reconciled { missing: 0, .. })),
        "{event:?}"
    );
    assert_eq!(fresh[&share].state().hash(), full[&share].state().hash());
    let rounds = match event {
        Some(Event::Reconciled { round_trips, .. }) => round_trips,
        _ => 0,
    };
    (took, (up, down, rounds))
}

fn best_of(runs: usize, mut work: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .min()
        .expect("at least one run")
}

fn edit_latency(edits: usize) {
    println!("## One edit reaching two online members (in process, no network), {edits} edits");
    let mut alice = Replica::create_share(&key(1), "list", "List", json!({}), T0).unwrap();
    let share = alice.share();
    alice
        .author(
            &key(1),
            Action::Grant {
                member: peer(2),
                level: Level::Write,
            },
            T0 + 1,
        )
        .unwrap();
    alice
        .author(
            &key(1),
            Action::Grant {
                member: peer(3),
                level: Level::Write,
            },
            T0 + 2,
        )
        .unwrap();
    let base: Vec<Op> = alice.kept_ops().cloned().collect();
    let mut nodes: Vec<BTreeMap<ShareId, Replica>> = (0..3)
        .map(|_| {
            let mut r = Replica::new(share);
            for op in &base {
                r.receive(op.wire(), T0).unwrap();
            }
            BTreeMap::from([(share, r)])
        })
        .collect();
    let mut to_bob = SyncPeer::new(peer(2), MAX_MESSAGE_BYTES);
    let mut to_carol = SyncPeer::new(peer(3), MAX_MESSAGE_BYTES);
    let mut bob_from_alice = SyncPeer::new(peer(1), MAX_MESSAGE_BYTES);
    let mut carol_from_alice = SyncPeer::new(peer(1), MAX_MESSAGE_BYTES);
    let mut samples: Vec<Duration> = Vec::with_capacity(edits);
    for i in 0..edits {
        let started = Instant::now();
        let (op, _) = nodes[0]
            .get_mut(&share)
            .unwrap()
            .author(
                &key(1),
                Action::SetProperty {
                    resource: "list".into(),
                    name: "n".into(),
                    value: json!(i),
                },
                T0 + 10 + i as u64,
            )
            .unwrap();
        to_bob.push(&op, &mut nodes[0]);
        to_carol.push(&op, &mut nodes[0]);
        let frame = to_bob.poll_transmit().unwrap();
        bob_from_alice.handle(&frame, &mut nodes[1], T0 + 10 + i as u64);
        let frame = to_carol.poll_transmit().unwrap();
        carol_from_alice.handle(&frame, &mut nodes[2], T0 + 10 + i as u64);
        samples.push(started.elapsed());
        assert_eq!(
            nodes[2][&share].resource("list").unwrap()["properties"]["n"],
            json!(i)
        );
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "p50 {}, p99 {} (sign, push, frame, verify, merge at both members)",
        ms(p(0.5)),
        ms(p(0.99))
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}
