//! Store benchmark, side by side with hand-written rusqlite doing the same work, in one run.
//! `cargo bench -p allpeers-store` (harness = false; prints a table). BENCH_SCALE=0.1 for a
//! quick run; BENCH_CASE=message runs only the chat-message latency case.

use std::time::{Duration, Instant};

use allpeers_model::query::{Op, Query};
use allpeers_model::resource::{Resource, Value};
use allpeers_store::Store;
use rusqlite::{Connection, params};

const ME: &str = "ap-bench";

fn scale() -> f64 {
    std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn image(i: usize) -> Resource {
    Resource::new("Image")
        .with_id(&format!("img{i:08}"))
        .with("owner", ME)
        .with("created", Value::Date(1_795_575_600_000 + i as i64))
        .with("modified", Value::Date(1_795_575_600_000 + i as i64))
        .with("title", format!("Picture {i}"))
        .with("name", format!("img{i}.png"))
        .with("size", (i as i64) * 7 % 1_000_003)
        .with("mimeType", "image/png")
        .with("width", (i % 4000) as i64)
        .with("height", (i % 3000) as i64)
}

/// Hand-written: the same rows in the same tables, the same change-log entry, prepared
/// statements, `batch` resources per transaction.
fn hand_insert(conn: &mut Connection, from: usize, n: usize, batch: usize) -> rusqlite::Result<()> {
    let mut i = from;
    while i < from + n {
        let tx = conn.transaction()?;
        {
            let mut r = tx.prepare_cached("INSERT INTO t_Resource(id, type, p_owner, p_created, p_modified, p_title) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
            let mut f = tx.prepare_cached("INSERT INTO t_File(rid, p_name, p_size, p_mimeType, p_hash) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            let mut im = tx.prepare_cached("INSERT INTO t_Image(rid, p_width, p_height, p_format, p_taken, p_orientation, p_thumbnail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            let mut ch = tx.prepare_cached("INSERT INTO ap_changes(time, author, op, id, type, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
            for k in i..(i + batch).min(from + n) {
                let id = format!("img{k:08}");
                let t = 1_795_575_600_000 + k as i64;
                let title = format!("Picture {k}");
                let name = format!("img{k}.png");
                let size = (k as i64) * 7 % 1_000_003;
                let (w, h) = ((k % 4000) as i64, (k % 3000) as i64);
                r.execute(params![id, "Image", ME, t, t, title])?;
                let rid = tx.last_insert_rowid();
                f.execute(params![
                    rid,
                    name,
                    size,
                    "image/png",
                    Option::<String>::None
                ])?;
                im.execute(params![
                    rid,
                    w,
                    h,
                    Option::<String>::None,
                    Option::<i64>::None,
                    Option::<i64>::None,
                    Option::<Vec<u8>>::None
                ])?;
                let data = serde_json::json!({"properties": {"owner": ME, "created": t, "modified": t, "title": title, "name": name, "size": size, "mimeType": "image/png", "width": w, "height": h}});
                ch.execute(params![t, ME, "create", id, "Image", data.to_string()])?;
            }
        }
        tx.commit()?;
        i += batch;
    }
    Ok(())
}

/// Fills with File/Image/Audio rows quickly (setup for the query benchmarks, not measured).
fn fill(conn: &mut Connection, from: usize, n: usize) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut r = tx.prepare("INSERT INTO t_Resource(id, type, p_owner, p_created, p_modified) VALUES (?1, ?2, ?3, ?4, ?4)")?;
        let mut f = tx.prepare(
            "INSERT INTO t_File(rid, p_name, p_size, p_mimeType) VALUES (?1, ?2, ?3, ?4)",
        )?;
        let mut im = tx.prepare("INSERT INTO t_Image(rid, p_width) VALUES (?1, ?2)")?;
        let mut au = tx.prepare("INSERT INTO t_Audio(rid, p_artist) VALUES (?1, ?2)")?;
        for k in from..from + n {
            let (ty, mime) = match k % 3 {
                0 => ("File", "application/octet-stream"),
                1 => ("Image", "image/jpeg"),
                _ => ("Audio", "audio/flac"),
            };
            r.execute(params![format!("r{k:08}"), ty, ME, k as i64])?;
            let rid = tx.last_insert_rowid();
            f.execute(params![
                rid,
                format!("f{k}"),
                (k as i64) * 7 % 1_000_003,
                mime
            ])?;
            match ty {
                "Image" => {
                    im.execute(params![rid, (k % 4000) as i64])?;
                }
                "Audio" => {
                    au.execute(params![rid, "Bach"])?;
                }
                _ => {}
            }
        }
    }
    tx.commit()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Hand-written polymorphic query: rids from the joined tables, then each row's tables.
fn hand_query(conn: &Connection, min_size: i64) -> rusqlite::Result<usize> {
    let mut st = conn.prepare_cached(
        "SELECT r.rid FROM t_Resource r JOIN t_File f ON f.rid = r.rid WHERE f.p_size > ?1 LIMIT 50",
    )?;
    let rids: Vec<i64> = st
        .query_map([min_size], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut n = 0;
    for rid in rids {
        let (id, ty, owner, title): (String, String, String, Option<String>) = conn
            .prepare_cached("SELECT id, type, p_owner, p_title FROM t_Resource WHERE rid = ?1")?
            .query_row([rid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        let (name, size): (String, i64) = conn
            .prepare_cached("SELECT p_name, p_size FROM t_File WHERE rid = ?1")?
            .query_row([rid], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if ty == "Image" {
            let _w: Option<i64> = conn
                .prepare_cached("SELECT p_width FROM t_Image WHERE rid = ?1")?
                .query_row([rid], |r| r.get(0))?;
        } else if ty == "Audio" {
            let _a: Option<String> = conn
                .prepare_cached("SELECT p_artist FROM t_Audio WHERE rid = ?1")?
                .query_row([rid], |r| r.get(0))?;
        }
        n += usize::from(
            !id.is_empty()
                && !owner.is_empty()
                && !name.is_empty()
                && size >= 0
                && title.as_deref() != Some("\0"),
        );
    }
    Ok(n)
}

const PEER_B: &str = "ap-b5xq3kzv7n2m4c6d8f0g1h3j5k7l9p2r4s6t8v0w2y4z6b8d0f2";

fn message(i: usize) -> Resource {
    Resource::new("Message")
        .with_id(&format!("m:{ME}:{i:010}"))
        .with("chat", format!("chat:{PEER_B}"))
        .with("sender", ME)
        .with("owner", ME)
        .with(
            "body",
            format!("message {i}: see you at the station at eight, bring the tickets please"),
        )
        .with("sent", Value::Date(1_795_575_600_000 + i as i64))
        .with(
            "hlc",
            format!("{:016x}-{:04x}", 1_795_575_600_000u64 + i as u64, i % 7),
        )
        .with_meta("read", true)
        .with_meta("pending", vec![PEER_B])
}

/// Hand-written: the same rows a stored chat message makes (t_Resource, t_Message, its two
/// metadata rows and, if `log`, the change-log entry with the properties' JSON), one transaction.
fn hand_message(conn: &mut Connection, i: usize, log: bool) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let id = format!("m:{ME}:{i:010}");
        let t = 1_795_575_600_000 + i as i64;
        let chat = format!("chat:{PEER_B}");
        let body =
            format!("message {i}: see you at the station at eight, bring the tickets please");
        let hlc = format!("{:016x}-{:04x}", t as u64, i % 7);
        tx.prepare_cached("INSERT INTO t_Resource(id, type, p_owner, p_created, p_modified) VALUES (?1, 'Message', ?2, ?3, ?3)")?
            .execute(params![id, ME, t])?;
        let rid = tx.last_insert_rowid();
        tx.prepare_cached("INSERT INTO t_Message(rid, p_chat, p_sender, p_body, p_sent, p_hlc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![rid, chat, ME, body, t, hlc])?;
        let mut meta =
            tx.prepare_cached("INSERT INTO ap_meta(rid, name, value) VALUES (?1, ?2, ?3)")?;
        meta.execute(params![rid, "read", 1])?;
        meta.execute(params![rid, "pending", format!("[\"{PEER_B}\"]")])?;
        if log {
            let data = serde_json::json!({"properties": {"owner": ME, "created": t, "modified": t, "chat": chat, "sender": ME, "body": body, "sent": t, "hlc": hlc}});
            tx.prepare_cached("INSERT INTO ap_changes(time, author, op, id, type, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
                .execute(params![t, ME, "create", id, "Message", data.to_string()])?;
        }
    }
    tx.commit()
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// One chat message stored, as the daemon does on `chat.send` and on receipt: a Message with
/// its metadata, one transaction each, on a fresh database file. The hand-written sides are the
/// floor (same rows; with and without the change-log entry), interleaved in rounds of 500.
fn message_latency(rows: &mut Vec<(String, String, String, String)>) {
    let n = ((5_000.0 * scale()) as usize).max(100);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path().join("ours.db"), ME).expect("open");
    let mut raw = Vec::new();
    // SQLite's defaults (the writer checkpoints every 1000 pages); the same without the
    // change-log row; the same never checkpointing at all (the floor for any checkpointing).
    for (name, autocheckpoint) in [
        ("hand.db", 1000),
        ("hand-nolog.db", 1000),
        ("hand-nockpt.db", 0),
    ] {
        let path = dir.path().join(name);
        drop(Store::open(&path, ME).expect("open")); // the same schema
        let c = Connection::open(&path).expect("open");
        c.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint={autocheckpoint};"
        ))
        .expect("pragma");
        raw.push(c);
    }
    let (mut ours, mut hand, mut nolog, mut nockpt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let round = 500;
    let mut i = 0;
    while i < n {
        let end = (i + round).min(n);
        let mut run_ours = || {
            for k in i..end {
                let m = message(k);
                let t = Instant::now();
                store.create(m).expect("create");
                ours.push(t.elapsed());
            }
        };
        let mut run_hand = |raw: &mut Vec<Connection>| {
            for k in i..end {
                let t = Instant::now();
                hand_message(&mut raw[0], k, true).expect("hand");
                hand.push(t.elapsed());
                let t = Instant::now();
                hand_message(&mut raw[1], k, false).expect("hand");
                nolog.push(t.elapsed());
                let t = Instant::now();
                hand_message(&mut raw[2], k, true).expect("hand");
                nockpt.push(t.elapsed());
            }
        };
        if (i / round).is_multiple_of(2) {
            run_ours();
            run_hand(&mut raw);
        } else {
            run_hand(&mut raw);
            run_ours();
        }
        i = end;
    }
    // At a person's pace: each message after a pause longer than the checkpointer's interval
    // (its WAL fsync runs in the pause; a checkpoint there would make the next commit fsync a
    // new WAL header).
    let paced = ((15.0 * scale()) as usize).max(3);
    let (mut ours_paced, mut hand_paced) = (Vec::new(), Vec::new());
    // Not measured: the first write after the burst above pays for the burst (its checkpoint
    // restarts the WAL).
    std::thread::sleep(Duration::from_millis(1100));
    store.create(message(n + paced)).expect("create");
    hand_message(&mut raw[0], n + paced, true).expect("hand");
    for k in n..n + paced {
        std::thread::sleep(Duration::from_millis(1100));
        let m = message(k);
        let t = Instant::now();
        store.create(m).expect("create");
        ours_paced.push(t.elapsed());
        let t = Instant::now();
        hand_message(&mut raw[0], k, true).expect("hand");
        hand_paced.push(t.elapsed());
    }
    for (p, name) in [(0.5, "median"), (1.0, "max")] {
        let o = percentile(&mut ours_paced, p);
        let h = percentile(&mut hand_paced, p);
        rows.push((
            format!("create 1 Message after a 1.1 s pause, {name} of {paced}"),
            ms(o),
            ms(h),
            format!("{:.2}x", o.as_secs_f64() / h.as_secs_f64()),
        ));
    }
    for (p, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")] {
        let o = percentile(&mut ours, p);
        let h = percentile(&mut hand, p);
        let nl = percentile(&mut nolog, p);
        let nc = percentile(&mut nockpt, p);
        rows.push((
            format!("create 1 Message, 1 txn each, {name} of {n}"),
            ms(o),
            format!(
                "{} (no change log: {}; never checkpointing: {})",
                ms(h),
                ms(nl),
                ms(nc)
            ),
            format!("{:.2}x", o.as_secs_f64() / h.as_secs_f64()),
        ));
    }
}

fn print(rows: Vec<(String, String, String, String)>) {
    println!();
    println!("| case | allpeers-store | hand-written rusqlite | note |");
    println!("|---|---|---|---|");
    for (a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
}

fn main() {
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    message_latency(&mut rows);
    if std::env::var("BENCH_CASE").as_deref() == Ok("message") {
        print(rows);
        return;
    }
    let s = scale();
    let n_insert = (100_000.0 * s) as usize;
    let n_total = (1_000_000.0 * s) as usize;
    let n_single = (10_000.0 * s) as usize;
    let dir = tempfile::tempdir().expect("tempdir");

    // ---- 1. insert typed resources (batches of 1000 per transaction) ----
    let ours_path = dir.path().join("ours.db");
    let hand_path = dir.path().join("hand.db");
    drop(Store::open(&hand_path, ME).expect("open")); // same schema for the hand-written side
    let mut store = Store::open(&ours_path, ME).expect("open");
    let batch = 1000;
    let items: Vec<Resource> = (0..n_insert).map(image).collect();
    let mut hand = Connection::open(&hand_path).expect("open");
    hand.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        .expect("pragma");
    // Interleaved in rounds of 10,000 (alternating which side goes first), so machine load and
    // cache warm-up hit both sides alike.
    let chunks: Vec<Vec<Resource>> = items.chunks(batch).map(<[Resource]>::to_vec).collect();
    let per_round = (10_000 / batch).max(1);
    let mut ours = Duration::ZERO;
    let mut handt = Duration::ZERO;
    let mut chunks = chunks.into_iter();
    let mut round = 0usize;
    let mut done = 0usize;
    loop {
        let these: Vec<Vec<Resource>> = chunks.by_ref().take(per_round).collect();
        if these.is_empty() {
            break;
        }
        let n: usize = these.iter().map(Vec::len).sum();
        let mut run_ours = |these: Vec<Vec<Resource>>| {
            let t = Instant::now();
            for chunk in these {
                store.create_many(chunk).expect("create_many");
            }
            ours += t.elapsed();
        };
        let mut run_hand = |from: usize| {
            let t = Instant::now();
            hand_insert(&mut hand, from, n, batch).expect("hand insert");
            handt += t.elapsed();
        };
        if round.is_multiple_of(2) {
            run_ours(these);
            run_hand(done);
        } else {
            run_hand(done);
            run_ours(these);
        }
        done += n;
        round += 1;
    }
    rows.push((
        format!("insert {n_insert} Images, 1000/txn"),
        ms(ours),
        ms(handt),
        format!(
            "{:.2}x (target <= 1.3x)",
            ours.as_secs_f64() / handt.as_secs_f64()
        ),
    ));

    // ---- 1b. one transaction per resource ----
    let mut ours = Duration::ZERO;
    let mut handt = Duration::ZERO;
    let step = 1000.min(n_single.max(1));
    let mut i = 0;
    while i < n_single {
        let t = Instant::now();
        for k in i..(i + step).min(n_single) {
            store.create(image(10_000_000 + k)).expect("create");
        }
        ours += t.elapsed();
        let t = Instant::now();
        hand_insert(&mut hand, 10_000_000 + i, step.min(n_single - i), 1).expect("hand insert");
        handt += t.elapsed();
        i += step;
    }
    rows.push((
        format!("insert {n_single} Images, 1 txn each"),
        ms(ours),
        ms(handt),
        format!("{:.2}x", ours.as_secs_f64() / handt.as_secs_f64()),
    ));

    // ---- 2. polymorphic query over n_total resources ----
    let existing = n_insert + n_single;
    {
        let mut c = Connection::open(&ours_path).expect("open");
        c.execute_batch("PRAGMA synchronous=OFF;").expect("pragma");
        let mut k = 0;
        while existing + k < n_total {
            let n = 100_000.min(n_total - existing - k);
            fill(&mut c, 20_000_000 + k, n).expect("fill");
            k += n;
        }
        c.execute_batch("ANALYZE;").expect("analyze");
    }
    drop(store);
    let store = Store::open(&ours_path, ME).expect("reopen");
    let total = store.count(&Query::of("Resource")).expect("count");
    let q = Query::of("File")
        .where_prop("size", Op::Gt, 990_000i64)
        .limit(50);
    let hand_ro = Connection::open(&ours_path).expect("open");
    let mut ours_t = Vec::new();
    let mut hand_t = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let r = store.query(&q).expect("query");
        ours_t.push(t.elapsed());
        assert_eq!(r.len(), 50);
        let t = Instant::now();
        let n = hand_query(&hand_ro, 990_000).expect("hand query");
        hand_t.push(t.elapsed());
        assert_eq!(n, 50);
    }
    let (o, h) = (median(ours_t), median(hand_t));
    rows.push((
        format!("File (polymorphic) size>X first 50 of {total}"),
        ms(o),
        ms(h),
        format!(
            "{} (target < 5 ms)",
            if o < Duration::from_millis(5) {
                "met"
            } else {
                "MISSED"
            }
        ),
    ));
    drop(store);

    // ---- 3. query-backed list: update cost vs list size ----
    let mut store = Store::open(&ours_path, ME).expect("reopen");
    let target = "r20000002"; // an Audio from the fill
    let mut sizes = vec![0usize];
    for n in [1_000usize, 10_000, 100_000] {
        if ((n as f64) * 3.0) < total as f64 {
            sizes.push(n);
        }
    }
    for n in sizes {
        // sizes are (k*7 mod 1000003): "size < T" holds for about T/1000003 of all files.
        let list_id = format!("list{n}");
        if n > 0 {
            let t_size = ((n as f64) / (total as f64) * 1_000_003.0) as i64;
            let q = Query::of("File").where_prop("size", Op::Lt, t_size);
            store
                .create(
                    Resource::new("List")
                        .with_id(&list_id)
                        .with("query", serde_json::to_string(&q).expect("json")),
                )
                .expect("list");
        }
        let members = if n > 0 {
            store.list_items(&list_id).expect("items").items.len()
        } else {
            0
        };
        let mut times = Vec::new();
        for k in 0..200u32 {
            // Toggle the resource in and out of the list.
            let v = if k.is_multiple_of(2) {
                0i64
            } else {
                1_000_000_000
            };
            let t = Instant::now();
            store.set_property(target, "size", v).expect("update");
            times.push(t.elapsed());
        }
        rows.push((
            format!("update 1 resource, query list of {members} items"),
            ms(median(times)),
            "-".into(),
            if n == 0 {
                "baseline: no query list".into()
            } else {
                String::new()
            },
        ));
        if n > 0 {
            store.delete(&list_id).expect("delete list");
        }
    }

    print(rows);
}
