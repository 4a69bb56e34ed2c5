//! The download manager over real transfers on loopback (our own engine seeding in place): the queue holds a second
//! download until the first finishes, pause and resume work, the list survives a restart and the download resumes
//! from its journal, cancel removes a transfer and its files, progress arrives as events, global limits outlive a restart, a file seeded in place is hashed again only once it changed, and a magnet is listed (paused, resumed,
//! cancelled, restored after a restart) while its metadata is fetched, and the uploads list is live.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use allpeers_transfer::bt::engine::{Engine, EngineConfig, EngineError, Target};
use allpeers_transfer::bt::metainfo::Torrent;
use allpeers_transfer::manager::{
    AddMagnet, AddTransfer, ContentKey, Manager, ManagerConfig, Status, TransferEvent, TransferId,
};
use allpeers_transfer::throttle::Limits;
use tokio::sync::broadcast;

const DEADLINE: Duration = Duration::from_secs(60);
const SIZE: usize = 4 * 1024 * 1024 + 99;

fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Writes `<dir>/<name>` and returns the torrent's bytes.
fn make(dir: &Path, name: &str, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let data = content(SIZE, seed);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), &data).unwrap();
    let torrent = dir.join(format!("{name}.torrent"));
    let status = Command::new("mktorrent")
        .args(["-a", "http://127.0.0.1:1/announce", "-l", "16", "-p", "-o"])
        .arg(&torrent)
        .arg(dir.join(name))
        .stdout(Stdio::null())
        .status()
        .expect("mktorrent is installed (tests/run.sh)");
    assert!(status.success());
    (std::fs::read(torrent).unwrap(), data)
}

async fn seeder(state: &Path, source: &Path, torrents: &[&[u8]]) -> Engine {
    let mut config = EngineConfig::new("127.0.0.1:0".parse().unwrap(), state.to_path_buf());
    config.use_trackers = false;
    let engine = Engine::start(config).await.unwrap();
    for bytes in torrents {
        let torrent = Torrent::from_bytes(bytes).unwrap();
        engine
            .add(
                torrent,
                Target::SeedInPlace {
                    dir: source.to_path_buf(),
                },
                vec![],
                Limits::default(),
            )
            .await
            .unwrap();
    }
    engine
}

async fn manager(state: PathBuf, max_active: usize) -> Manager {
    // ALLPEERS_LOG=debug shows the sessions' view when a test fails.
    if let Ok(filter) = std::env::var("ALLPEERS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
    let mut engine = EngineConfig::new("127.0.0.1:0".parse().unwrap(), state);
    engine.use_trackers = false;
    let mut config = ManagerConfig::new(engine);
    config.max_active = max_active;
    Manager::start(config).await.unwrap()
}

/// Waits for the event `wanted` picks out, failing the test past the deadline.
async fn wait_for(
    events: &mut broadcast::Receiver<TransferEvent>,
    mut wanted: impl FnMut(&TransferEvent) -> bool,
) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event) => return,
                Ok(TransferEvent::Progress { .. }) => {}
                Ok(event) if std::env::var("ALLPEERS_LOG").is_ok() => eprintln!("{event:?}"),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the manager is gone"),
            }
        }
    })
    .await
    .expect("the event came in time");
}

fn is_status(event: &TransferEvent, id: TransferId, status: &Status) -> bool {
    matches!(event, TransferEvent::Status { id: i, status: s } if *i == id && s == status)
}

fn add(torrent: &[u8], dir: &Path, seeder: &Engine, limits: Limits) -> AddTransfer {
    AddTransfer {
        torrent: torrent.to_vec(),
        dir: dir.to_path_buf(),
        peers: vec![seeder.listen_addr()],
        priority: 0,
        sequential: false,
        limits,
        paused: false,
        seed_in_place: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_runs_one_download_at_a_time_and_reports_progress() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (first_torrent, first_data) = make(&source, "first.bin", 1);
    let (second_torrent, second_data) = make(&source, "second.bin", 2);
    let seeder = seeder(
        &work.path().join("seeder"),
        &source,
        &[&first_torrent, &second_torrent],
    )
    .await;
    let manager = manager(work.path().join("state"), 1).await;
    let mut events = manager.subscribe();
    let out = work.path().join("out");
    // The first is slowed to 2 MiB/s so the second is surely still queued behind it.
    let slow = Limits {
        down: Some(2 << 20),
        up: None,
    };
    let first = manager
        .add(add(&first_torrent, &out, &seeder, slow))
        .await
        .unwrap();
    let second = manager
        .add(add(&second_torrent, &out, &seeder, Limits::default()))
        .await
        .unwrap();
    assert_eq!(manager.get(first).unwrap().status, Status::Downloading);
    assert_eq!(manager.get(second).unwrap().status, Status::Queued);

    let mut saw_progress = false;
    let mut first_done = false;
    wait_for(&mut events, |event| {
        match event {
            TransferEvent::Progress { id, progress } if *id == first && progress.done_bytes > 0 => {
                saw_progress = true
            }
            TransferEvent::Status {
                id,
                status: Status::Downloading,
            } if *id == second => {
                assert!(first_done, "the second started before the first finished")
            }
            event if is_status(event, first, &Status::Seeding) => first_done = true,
            _ => {}
        }
        is_status(event, second, &Status::Seeding)
    })
    .await;
    assert!(saw_progress, "no progress event with bytes done");
    assert!(std::fs::read(out.join("first.bin")).unwrap() == first_data);
    assert!(std::fs::read(out.join("second.bin")).unwrap() == second_data);
    assert_eq!(manager.list().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_changed_while_queued_decides_which_starts_next() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let torrents: Vec<_> = (1..=3)
        .map(|n| make(&source, &format!("f{n}.bin"), n).0)
        .collect();
    let refs: Vec<&[u8]> = torrents.iter().map(Vec::as_slice).collect();
    let seeder = seeder(&work.path().join("seeder"), &source, &refs).await;
    let manager = manager(work.path().join("state"), 1).await;
    let mut events = manager.subscribe();
    let out = work.path().join("out");
    let slow = Limits {
        down: Some(1 << 20),
        up: None,
    };
    let mut ids = Vec::new();
    for torrent in &torrents {
        ids.push(
            manager
                .add(add(torrent, &out, &seeder, slow))
                .await
                .unwrap(),
        );
    }
    let [first, second, third] = ids[..] else {
        unreachable!()
    };
    assert_eq!(manager.get(second).unwrap().status, Status::Queued);
    // Added last, raised above the second: it takes the slot the first gives up.
    manager.set_priority(third, 5).await.unwrap();
    assert_eq!(manager.get(third).unwrap().priority, 5);
    manager.pause(first).await.unwrap();
    wait_for(&mut events, |event| {
        is_status(event, third, &Status::Downloading)
    })
    .await;
    assert_eq!(manager.get(second).unwrap().status, Status::Queued);
    assert!(matches!(
        manager.set_priority(u64::MAX, 1).await,
        Err(allpeers_transfer::manager::ManagerError::Unknown(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_download_survives_a_restart_and_resumes_from_its_journal() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (torrent, data) = make(&source, "film.bin", 3);
    let seeder = seeder(&work.path().join("seeder"), &source, &[&torrent]).await;
    let state = work.path().join("state");
    let out = work.path().join("out");
    let manager_1 = manager(state.clone(), 3).await;
    let mut events = manager_1.subscribe();
    let id = manager_1
        .add(add(
            &torrent,
            &out,
            &seeder,
            Limits {
                down: Some(1 << 20),
                up: None,
            },
        ))
        .await
        .unwrap();
    wait_for(&mut events, |event| {
        matches!(event, TransferEvent::Progress { id: i, progress } if *i == id && progress.done_bytes > 0)
    })
    .await;
    manager_1.pause(id).await.unwrap();
    assert_eq!(
        manager_1.get(id).unwrap().status,
        Status::Paused("paused by the user".into())
    );
    manager_1.shutdown().await;
    drop(manager_1);

    let manager_2 = manager(state, 3).await;
    let listed = manager_2.list();
    assert_eq!(listed.len(), 1, "the list survived the restart");
    assert!(matches!(listed[0].status, Status::Paused(_)));
    let mut events = manager_2.subscribe();
    manager_2.set_limits(Some(id), Limits::default()).unwrap();
    manager_2.resume(id).await.unwrap();
    wait_for(&mut events, |event| is_status(event, id, &Status::Seeding)).await;
    assert!(std::fs::read(out.join("film.bin")).unwrap() == data);
    let progress = manager_2.get(id).unwrap().progress.unwrap();
    assert!(
        progress.downloaded < SIZE as u64,
        "resumed from the journal, not from zero: {progress:?}"
    );

    manager_2.cancel(id, true).await.unwrap();
    assert!(manager_2.list().is_empty());
    assert!(
        !out.join("film.bin").exists(),
        "cancel with delete removes the files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_limits_survive_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let limits = Limits {
        down: Some(300_000),
        up: Some(40_000),
    };
    let manager_1 = manager(state.clone(), 3).await;
    assert_eq!(manager_1.engine().global_limits(), Limits::default());
    manager_1.set_limits(None, limits).unwrap();
    manager_1.shutdown().await;
    drop(manager_1);

    let manager_2 = manager(state.clone(), 3).await;
    assert_eq!(manager_2.engine().global_limits(), limits);
    // Lifting the limits is remembered too.
    manager_2.set_limits(None, Limits::default()).unwrap();
    manager_2.shutdown().await;
    drop(manager_2);
    let manager_3 = manager(state, 3).await;
    assert_eq!(manager_3.engine().global_limits(), Limits::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_seeded_in_place_is_hashed_again_only_once_it_changed() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (bytes, data) = make(&source, "song.bin", 5);
    let file = source.join("song.bin");
    let mut config = EngineConfig::new("127.0.0.1:0".parse().unwrap(), work.path().join("state"));
    config.use_trackers = false;
    let engine = Engine::start(config).await.unwrap();
    let torrent = Torrent::from_bytes(&bytes).unwrap();
    let seed = |engine: &Engine| {
        let (engine, torrent, dir) = (engine.clone(), torrent.clone(), source.clone());
        async move {
            let added = engine
                .add(
                    torrent.clone(),
                    Target::SeedInPlace { dir },
                    vec![],
                    Limits::default(),
                )
                .await;
            engine.remove(&torrent.info_hash).await;
            added.map(|_| ())
        }
    };

    // The first seeding hashes the file and records what it looked like.
    seed(&engine).await.unwrap();
    assert!(engine.stamps_path(&torrent.info_hash).exists());

    // A byte changed with the old modification time put back: the stamps still match, so the file
    // is not hashed (the change goes unseen here; every downloader checks each piece).
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    let mut changed = data.clone();
    changed[1000] ^= 0xff;
    std::fs::write(&file, &changed).unwrap();
    let handle = std::fs::File::options().write(true).open(&file).unwrap();
    handle.set_modified(modified).unwrap();
    seed(&engine).await.expect("trusted without hashing");

    // A later modification time: hashed again, and the changed piece is caught.
    handle
        .set_modified(modified + Duration::from_secs(2))
        .unwrap();
    let refused = seed(&engine).await.unwrap_err();
    assert!(
        matches!(refused, EngineError::NotComplete { bad: 1, .. }),
        "{refused:?}"
    );
}

fn magnet(info_hash: &[u8; 20], name: &str, peer: std::net::SocketAddr) -> AddMagnet {
    let hex: String = info_hash.iter().map(|b| format!("{b:02x}")).collect();
    AddMagnet {
        link: format!("magnet:?xt=urn:btih:{hex}&dn={name}&x.pe={peer}"),
        dir: PathBuf::new(),
        peers: vec![],
        priority: 0,
        sequential: false,
        limits: Limits::default(),
        paused: false,
    }
}

/// A magnet is listed from the moment it is added, named by its `dn`, in `FetchingMetadata` while its only peer
/// (a socket that accepts and never answers) holds it; pause stops the fetch, resume starts it again, a restart
/// brings it back, cancel forgets it. One whose peer is our seeder gets its torrent, then its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_is_listed_while_its_metadata_is_fetched() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (torrent, data) = make(&source, "clip.bin", 7);
    let info_hash = Torrent::from_bytes(&torrent).unwrap().info_hash;
    let seeder = seeder(&work.path().join("seeder"), &source, &[&torrent]).await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let state = work.path().join("state");
    let out = work.path().join("out");

    let manager_1 = manager(state.clone(), 3).await;
    let mut events = manager_1.subscribe();
    let stuck = manager_1
        .add_magnet(AddMagnet {
            dir: out.clone(),
            ..magnet(&[0x42; 20], "waiting", silent_addr)
        })
        .await
        .unwrap();
    let info = manager_1.get(stuck).unwrap();
    assert_eq!(info.status, Status::FetchingMetadata);
    assert_eq!(info.name, "waiting");
    assert_eq!(info.content, ContentKey::InfoHash([0x42; 20]));
    assert_eq!(info.total_bytes, 0);
    assert_eq!(manager_1.list().len(), 1);
    assert!(matches!(
        manager_1
            .add_magnet(magnet(&[0x42; 20], "again", silent_addr))
            .await,
        Err(allpeers_transfer::manager::ManagerError::Engine(
            EngineError::Duplicate
        ))
    ));
    manager_1.pause(stuck).await.unwrap();
    assert!(matches!(
        manager_1.get(stuck).unwrap().status,
        Status::Paused(_)
    ));
    manager_1.resume(stuck).await.unwrap();
    wait_for(&mut events, |event| {
        is_status(event, stuck, &Status::FetchingMetadata)
    })
    .await;
    manager_1.pause(stuck).await.unwrap();
    manager_1.shutdown().await;
    drop(manager_1);

    let manager_2 = manager(state, 3).await;
    let mut events = manager_2.subscribe();
    let listed = manager_2
        .get(stuck)
        .expect("the magnet survived the restart");
    assert_eq!(listed.name, "waiting");
    assert!(matches!(listed.status, Status::Paused(_)));
    manager_2.resume(stuck).await.unwrap();
    assert_eq!(
        manager_2.get(stuck).unwrap().status,
        Status::FetchingMetadata
    );
    manager_2.cancel(stuck, true).await.unwrap();
    assert!(manager_2.list().is_empty());

    let id = manager_2
        .add_magnet(AddMagnet {
            dir: out.clone(),
            ..magnet(&info_hash, "clip", seeder.listen_addr())
        })
        .await
        .unwrap();
    assert_eq!(manager_2.get(id).unwrap().name, "clip");
    wait_for(&mut events, |event| is_status(event, id, &Status::Seeding)).await;
    let info = manager_2.get(id).unwrap();
    assert_eq!(info.name, "clip.bin", "named by its torrent now");
    assert_eq!(info.total_bytes, SIZE as u64);
    assert!(std::fs::read(out.join("clip.bin")).unwrap() == data);
    held.abort();
}

/// The upload monitor asks the sessions, not the last progress snapshot: a leecher taking from our seeding manager
/// is listed while it takes, and nobody once the seed is paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uploads_list_is_live() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (torrent, _) = make(&source, "talk.bin", 9);
    let seeding = manager(work.path().join("seeder"), 3).await;
    let seed = seeding
        .add(AddTransfer {
            peers: vec![],
            seed_in_place: true,
            ..add(&torrent, &source, seeding.engine(), Limits::default())
        })
        .await
        .unwrap();
    assert_eq!(seeding.get(seed).unwrap().status, Status::Seeding);
    assert!(seeding.uploads().await.is_empty());
    let leeching = manager(work.path().join("leecher"), 3).await;
    let mut events = leeching.subscribe();
    let slow = Limits {
        down: Some(1 << 20),
        up: None,
    };
    let leech = leeching
        .add(add(
            &torrent,
            &work.path().join("out"),
            seeding.engine(),
            slow,
        ))
        .await
        .unwrap();
    wait_for(&mut events, |event| {
        matches!(event, TransferEvent::Progress { id, progress } if *id == leech && progress.done_bytes > 0)
    })
    .await;
    let uploads = seeding.uploads().await;
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].0, seed);
    assert!(uploads[0].1.uploaded > 0);
    assert_eq!(uploads[0].1.addr.ip(), std::net::Ipv4Addr::LOCALHOST);
    seeding.pause(seed).await.unwrap();
    assert!(
        seeding.uploads().await.is_empty(),
        "a paused seed uploads nothing"
    );
}

/// A manager in `dir` whose every dial of a file's source fails (each dial's peer recorded), retrying after
/// `retry_delay` up to `max_attempts` times.
async fn offline_manager(
    dir: &Path,
    retry_delay: Duration,
    max_attempts: u32,
) -> (Manager, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let mut engine = EngineConfig::new("127.0.0.1:0".parse().unwrap(), dir.join("state"));
    engine.use_trackers = false;
    let mut config = ManagerConfig::new(engine);
    config.retry_delay = retry_delay;
    config.max_attempts = max_attempts;
    let dialed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = dialed.clone();
    config.dial = Some(std::sync::Arc::new(move |peer: String| {
        record.lock().unwrap().push(peer);
        Box::pin(async { Err(std::io::Error::other("offline")) })
    }));
    (Manager::start(config).await.unwrap(), dialed)
}

/// A shared file of 100,000 bytes (content `[hash; 32]`) to fetch from `sources` into `dir`.
fn add_file(hash: u8, sources: &[&str], dir: &Path) -> allpeers_transfer::manager::AddFile {
    allpeers_transfer::manager::AddFile {
        spec: allpeers_transfer::blob::FileSpec {
            hash: allpeers_transfer::blob::ContentHash([hash; 32]),
            size: 100_000,
            name: "film.mkv".into(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
        },
        dir: dir.to_path_buf(),
        priority: 0,
        limits: Limits::default(),
        paused: false,
    }
}

/// Whether `event` says transfer `id` waits to retry (`failed`: gave up).
fn ended(event: &TransferEvent, id: u64, failed: bool) -> bool {
    match event {
        TransferEvent::Status { id: i, status } if *i == id => {
            if failed {
                matches!(status, Status::Failed(_))
            } else {
                matches!(status, Status::Retrying { .. })
            }
        }
        _ => false,
    }
}

/// A download that failed waits out its backoff before it starts again; paused meanwhile, it stays paused. (The
/// retry once started again regardless.) A file download whose every source fails to dial fails at once, so the
/// retry is the manager's, the same for a torrent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_paused_while_it_waits_to_retry_stays_paused() {
    let work = tempfile::tempdir().unwrap();
    let retry_delay = Duration::from_millis(200);
    let (manager, dialed) = offline_manager(work.path(), retry_delay, 5).await;
    let mut events = manager.subscribe();
    let id = manager
        .add_file(add_file(7, &["nobody"], &work.path().join("out")))
        .await
        .unwrap();
    wait_for(&mut events, |e| ended(e, id, false)).await;
    manager.pause(id).await.unwrap();
    let dials = dialed.lock().unwrap().len();
    // Ten backoffs: a retry that ignored the pause would have started (and dialed) long before.
    let restarted = tokio::time::timeout(
        retry_delay * 10,
        wait_for(&mut events, |e| {
            matches!(e, TransferEvent::Status { id: i, status: Status::Downloading } if *i == id)
        }),
    )
    .await;
    assert!(restarted.is_err(), "the paused download started again");
    assert_eq!(dialed.lock().unwrap().len(), dials);
    assert_eq!(
        manager.get(id).unwrap().status,
        Status::Paused("paused by the user".into())
    );
}

/// A file download that gave up (every source failed) starts again when the share names a source it did not have,
/// and that source is the one asked; naming the same sources again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_gave_up_starts_again_when_a_new_source_is_named() {
    let work = tempfile::tempdir().unwrap();
    let (manager, dialed) = offline_manager(work.path(), Duration::from_millis(50), 1).await;
    let mut events = manager.subscribe();
    let id = manager
        .add_file(add_file(7, &["alice"], &work.path().join("out")))
        .await
        .unwrap();
    wait_for(&mut events, |e| ended(e, id, true)).await;
    assert!(
        !manager
            .set_file_sources(id, vec!["alice".into()])
            .await
            .unwrap()
    );
    assert!(matches!(manager.get(id).unwrap().status, Status::Failed(_)));
    assert!(!dialed.lock().unwrap().contains(&"carol".to_string()));
    // Alice left the share and carol joined it (one source: fetched one-to-one, which fails at once when it
    // cannot dial; a swarm waits out its stall first).
    assert!(
        manager
            .set_file_sources(id, vec!["carol".into()])
            .await
            .unwrap()
    );
    wait_for(
        &mut events,
        |e| matches!(e, TransferEvent::Status { id: i, status: Status::Downloading } if *i == id),
    )
    .await;
    wait_for(&mut events, |e| ended(e, id, true)).await;
    assert!(
        dialed.lock().unwrap().contains(&"carol".to_string()),
        "{dialed:?}"
    );
}

/// A file download waiting to retry, or one that gave up, starts again at once when one of its sources is back
/// (the node calls this when a peer comes online); a peer that is none of its sources changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_waiting_for_its_source_starts_again_when_the_source_is_back() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    // Retrying after an hour: only the source's return starts a download again within the test.
    let hour = Duration::from_secs(3600);

    // Waiting out its backoff.
    let (manager, dialed) = offline_manager(&work.path().join("retrying"), hour, 1).await;
    let mut events = manager.subscribe();
    let id = manager
        .add_file(add_file(9, &["alice"], &out))
        .await
        .unwrap();
    wait_for(&mut events, |e| ended(e, id, false)).await;
    assert!(
        manager.source_back("carol").await.is_empty(),
        "not a source of it"
    );
    let before = dialed.lock().unwrap().len();
    assert_eq!(manager.source_back("alice").await, vec![id]);
    wait_for(&mut events, |e| ended(e, id, false)).await;
    assert_eq!(
        dialed.lock().unwrap().len(),
        before + 1,
        "asked again at once"
    );
    assert!(
        matches!(
            manager.get(id).unwrap().status,
            Status::Retrying { attempt: 1, .. }
        ),
        "its retries counted from zero"
    );

    // Given up (no retries at all).
    let (manager, dialed) = offline_manager(&work.path().join("given-up"), hour, 0).await;
    let mut events = manager.subscribe();
    let id = manager
        .add_file(add_file(10, &["alice"], &out))
        .await
        .unwrap();
    wait_for(&mut events, |e| ended(e, id, true)).await;
    let before = dialed.lock().unwrap().len();
    assert_eq!(manager.source_back("alice").await, vec![id]);
    wait_for(&mut events, |e| ended(e, id, true)).await;
    assert_eq!(dialed.lock().unwrap().len(), before + 1);
}
