//! Store tests against real SQLite files in temporary directories.

use std::sync::{Arc, Mutex};

use allpeers_model::query::{Expr, Op, Query};
use allpeers_model::resource::{Child, Patch, Resource, Value};
use allpeers_store::{Event, EventKind, Filter, ResourceAdapter, Store, StoreError};

const ME: &str = "ap-local-peer";

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path().join("store.db"), ME).unwrap()
}

fn file(name: &str, size: i64) -> Resource {
    Resource::new("File").with("name", name).with("size", size)
}
fn image(name: &str, size: i64, width: i64) -> Resource {
    Resource::new("Image")
        .with("name", name)
        .with("size", size)
        .with("width", width)
}
fn audio(name: &str, size: i64) -> Resource {
    Resource::new("Audio")
        .with("name", name)
        .with("size", size)
        .with("artist", "Bach")
}

fn events(store: &mut Store, filter: Filter) -> Arc<Mutex<Vec<Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    store
        .subscribe(
            filter,
            Arc::new(move |e: &Event| s.lock().unwrap().push(e.clone())),
        )
        .unwrap();
    seen
}

fn count_rows(store: &Store, table: &str) -> i64 {
    store
        .connection()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn create_get_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let mut s = open(&dir);
        let m = Resource::new("Message")
            .with("sender", ME)
            .with("sent", "2026-11-25T03:00:00Z")
            .with("body", "hello")
            .with("attachments", vec!["a", "b"])
            .with_child(
                "receipt",
                Child::default()
                    .with("peer", "p1")
                    .with("read", "2026-11-25T03:00:01Z"),
            )
            .with_child("receipt", Child::default().with("peer", "p2"))
            .with_meta("read", true);
        let created = s.create(m).unwrap();
        id = created.id.clone();
        assert_eq!(created.get("owner"), Some(&Value::String(ME.into())));
        assert!(matches!(created.get("created"), Some(Value::Date(_))));
        let back = s.get(&id).unwrap().unwrap();
        assert_eq!(back, created);
    }
    let s = open(&dir);
    let back = s.get(&id).unwrap().unwrap();
    assert_eq!(back.children["receipt"].len(), 2);
    assert_eq!(
        back.children["receipt"][1].properties["peer"],
        Value::String("p2".into())
    );
    assert_eq!(
        back.get("attachments"),
        Some(&Value::List(vec!["a".into(), "b".into()]))
    );
    assert_eq!(back.meta["read"], Value::Bool(true));
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

#[test]
fn invalid_resource_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.create(file("ok", 1)).unwrap();
    let before = (
        count_rows(&s, "t_Resource"),
        count_rows(&s, "t_File"),
        count_rows(&s, "ap_changes"),
    );
    let bad = [
        Resource::new("Image")
            .with("name", "x")
            .with("width", "wide"),
        Resource::new("File").with("size", 3i64),
        Resource::new("File")
            .with("name", "x")
            .with("colour", "red"),
        Resource::new("Nope").with("name", "x"),
        Resource::new("File").with_id("bad id!").with("name", "x"),
        Resource::new("File").with("name", "nul\0inside"),
        file("x", 1).with("name\"; DROP TABLE t_File; --", "x"),
        file("x", 1).with_meta("rating'; DROP TABLE ap_meta; --", 1i64),
        file("x", 1).with_child("x\"); DROP TABLE t_Resource; --", Child::default()),
    ];
    for r in bad {
        let e = s.create(r).unwrap_err();
        assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    }
    // All-or-nothing batch: one bad resource, none written.
    let e = s
        .create_many(vec![file("a", 1), file("b", 2), Resource::new("File")])
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    // Duplicate id.
    s.create(file("d", 1).with_id("dup")).unwrap();
    let e = s.create(file("d2", 1).with_id("dup")).unwrap_err();
    assert!(matches!(e, StoreError::Exists(_)), "{e}");
    let after = (
        count_rows(&s, "t_Resource"),
        count_rows(&s, "t_File"),
        count_rows(&s, "ap_changes"),
    );
    assert_eq!((before.0 + 1, before.1 + 1, before.2 + 1), after);
    // A bad update changes nothing either.
    let e = s
        .update("dup", &Patch::default().set("size", "big"))
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    assert_eq!(
        s.get("dup").unwrap().unwrap().get("size"),
        Some(&Value::Integer(1))
    );
    assert!(matches!(
        s.update("nope", &Patch::default()).unwrap_err(),
        StoreError::NotFound(_)
    ));
    assert!(matches!(
        s.delete("nope").unwrap_err(),
        StoreError::NotFound(_)
    ));
}

#[test]
fn polymorphic_queries_or_groups_sort_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.create(file("notes.txt", 10).with_id("f1")).unwrap();
    s.create(
        image("cat.png", 2000, 640)
            .with_id("i1")
            .with_meta("rating", 5i64),
    )
    .unwrap();
    s.create(
        image("dog.jpg", 3000, 1024)
            .with_id("i2")
            .with_meta("rating", 2i64),
    )
    .unwrap();
    s.create(audio("fugue.flac", 50_000).with_id("a1")).unwrap();
    s.create(
        Resource::new("Link")
            .with("url", "https://example.org")
            .with_id("l1"),
    )
    .unwrap();

    let ids = |q: &Query| {
        let mut v = s.query_ids(q).unwrap();
        v.sort();
        v
    };
    // Polymorphic: a query on File returns Images and Audio.
    assert_eq!(ids(&Query::of("File")), ["a1", "f1", "i1", "i2"]);
    assert_eq!(ids(&Query::of("Resource")).len(), 5);
    assert_eq!(ids(&Query::of("Image")), ["i1", "i2"]);
    // Conditions on inherited and own properties.
    assert_eq!(
        ids(&Query::of("File").where_prop("size", Op::Gt, 1000i64)),
        ["a1", "i1", "i2"]
    );
    assert_eq!(
        ids(&Query::of("Image").where_prop("width", Op::Ge, 1000i64)),
        ["i2"]
    );
    // OR group.
    let q = Query::of("File").or(vec![
        Expr::prop("name", Op::Prefix, "cat"),
        Expr::prop("size", Op::Lt, 100i64),
    ]);
    assert_eq!(ids(&q), ["f1", "i1"]);
    // isA inside OR, not, contains, isNull.
    let q = Query::of("File").or(vec![
        Expr::IsA("Audio".into()),
        Expr::prop("name", Op::Contains, "og"),
    ]);
    assert_eq!(ids(&q), ["a1", "i2"]);
    assert_eq!(
        ids(&Query::of("File").and(Expr::Not(Box::new(Expr::IsA("Image".into()))))),
        ["a1", "f1"]
    );
    assert_eq!(
        ids(&Query::of("File").and(Expr::is_null("mimeType"))).len(),
        4
    );
    assert_eq!(
        ids(&Query::of("File").where_prop("name", Op::Ne, "cat.png")),
        ["a1", "f1", "i2"]
    );
    // Metadata conditions.
    assert_eq!(
        ids(&Query::of("File").and(Expr::meta("rating", Op::Ge, 3i64))),
        ["i1"]
    );
    // Sort, limit, offset, count.
    let q = Query::of("File").sort_by("size", true).limit(2).offset(1);
    assert_eq!(s.query_ids(&q).unwrap(), ["i2", "i1"]);
    assert_eq!(s.count(&Query::of("File")).unwrap(), 4);
    assert_eq!(s.count(&q).unwrap(), 2);
    // Full resources come back with their subtype's properties.
    let r = s
        .query(&Query::of("File").where_prop("name", Op::Eq, "dog.jpg"))
        .unwrap();
    assert_eq!(r[0].type_name, "Image");
    assert_eq!(r[0].get("width"), Some(&Value::Integer(1024)));
    // JSON form works the same.
    let q = Query::from_json(r#"{"type":"File","where":[{"any":[{"prop":{"name":"name","op":"prefix","value":"cat"}},{"prop":{"name":"size","op":"<","value":100}}]}]}"#).unwrap();
    assert_eq!(ids(&q), ["f1", "i1"]);
}

#[test]
fn list_valued_properties_query() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.create(
        Resource::new("Link")
            .with("url", "u1")
            .with("tags", vec!["rust", "p2p"])
            .with_id("l1"),
    )
    .unwrap();
    s.create(
        Resource::new("Link")
            .with("url", "u2")
            .with("tags", vec!["cats"])
            .with_id("l2"),
    )
    .unwrap();
    s.create(Resource::new("Link").with("url", "u3").with_id("l3"))
        .unwrap();
    assert_eq!(
        s.query_ids(&Query::of("Link").where_prop("tags", Op::Eq, "p2p"))
            .unwrap(),
        ["l1"]
    );
    assert_eq!(
        s.query_ids(&Query::of("Link").where_prop("tags", Op::Prefix, "ca"))
            .unwrap(),
        ["l2"]
    );
    assert_eq!(
        s.query_ids(&Query::of("Link").and(Expr::is_null("tags")))
            .unwrap(),
        ["l3"]
    );
    let mut ne = s
        .query_ids(&Query::of("Link").where_prop("tags", Op::Ne, "cats"))
        .unwrap();
    ne.sort();
    assert_eq!(ne, ["l1", "l3"]);
}

#[test]
fn hostile_values_are_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let hostile = [
        "'; DROP TABLE t_Resource; --",
        "\"; DROP TABLE t_File; --",
        "x' OR '1'='1",
        "?1",
        "%_\\",
        "\u{FEFF}💥",
    ];
    for (i, h) in hostile.iter().enumerate() {
        s.create(file(h, i as i64).with_id(&format!("h{i}")))
            .unwrap();
    }
    let huge = "y".repeat(1 << 20);
    s.create(file(&huge, 99).with_id("huge")).unwrap();
    for (i, h) in hostile.iter().enumerate() {
        assert_eq!(
            s.query_ids(&Query::of("File").where_prop("name", Op::Eq, *h))
                .unwrap(),
            [format!("h{i}")]
        );
        assert_eq!(
            s.query_ids(&Query::of("File").where_prop("name", Op::Prefix, *h))
                .unwrap(),
            [format!("h{i}")]
        );
        assert_eq!(
            s.count(&Query::of("File").where_prop("name", Op::Contains, *h))
                .unwrap(),
            1
        );
    }
    // NUL and huge strings in query values: just data, no match.
    assert_eq!(
        s.count(&Query::of("File").where_prop("name", Op::Eq, "a\0'; DROP TABLE t_File; --"))
            .unwrap(),
        0
    );
    assert_eq!(
        s.count(&Query::of("File").where_prop("name", Op::Eq, huge.as_str()))
            .unwrap(),
        1
    );
    assert_eq!(
        s.count(&Query::of("File").where_prop("name", Op::Eq, "z".repeat(1 << 20)))
            .unwrap(),
        0
    );
    // Hostile property and type names are refused by the schema check, never reach SQL.
    let q = Query::from_json(r#"{"type":"File","where":[{"prop":{"name":"name\"; DROP TABLE t_File; --","op":"=","value":1}}]}"#).unwrap();
    assert!(matches!(s.query(&q).unwrap_err(), StoreError::Query(_)));
    let q = Query::from_json(r#"{"type":"File\"; DROP TABLE t_File; --"}"#).unwrap();
    assert!(matches!(s.query(&q).unwrap_err(), StoreError::Query(_)));
    let q =
        Query::from_json(r#"{"type":"File","sort":[{"prop":"size; DROP TABLE t_File"}]}"#).unwrap();
    assert!(matches!(s.query(&q).unwrap_err(), StoreError::Query(_)));
    assert_eq!(
        s.count(&Query::of("File")).unwrap(),
        hostile.len() as u64 + 1
    );
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

#[test]
fn explicit_lists_and_list_queries() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    for i in 0..4 {
        s.create(file(&format!("f{i}"), i).with_id(&format!("f{i}")))
            .unwrap();
    }
    s.create(
        Resource::new("List")
            .with("title", "Holiday")
            .with_id("holiday"),
    )
    .unwrap();
    s.create(Resource::new("List").with("title", "Work").with_id("work"))
        .unwrap();
    let seen = events(&mut s, Filter::Id("holiday".into()));
    s.list_insert("holiday", "f0", None).unwrap();
    s.list_insert("holiday", "f1", None).unwrap();
    s.list_insert("holiday", "f2", Some(0)).unwrap();
    assert_eq!(s.list_items("holiday").unwrap().items, ["f2", "f0", "f1"]);
    s.list_move("holiday", "f2", 2).unwrap();
    assert_eq!(s.list_items("holiday").unwrap().items, ["f0", "f1", "f2"]);
    s.list_move("holiday", "f1", 0).unwrap();
    assert_eq!(s.list_items("holiday").unwrap().items, ["f1", "f0", "f2"]);
    s.list_remove("holiday", "f0").unwrap();
    assert_eq!(s.list_items("holiday").unwrap().items, ["f1", "f2"]);
    assert!(matches!(
        s.list_insert("holiday", "f1", None).unwrap_err(),
        StoreError::Exists(_)
    ));
    assert!(matches!(
        s.list_insert("f1", "f2", None).unwrap_err(),
        StoreError::BadRequest(_)
    ));
    s.list_insert("work", "f3", None).unwrap();
    s.list_insert("work", "f1", None).unwrap();
    {
        let ev = seen.lock().unwrap();
        let kinds: Vec<EventKind> = ev.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::ItemAdded,
                EventKind::ItemAdded,
                EventKind::ItemAdded,
                EventKind::ItemMoved,
                EventKind::ItemMoved,
                EventKind::ItemRemoved
            ]
        );
    }
    // Items of lists matching X.
    let mut items = s
        .query_ids(
            &Query::of("File").and(Expr::ItemsOf(Box::new(Query::of("List").where_prop(
                "title",
                Op::Eq,
                "Holiday",
            )))),
        )
        .unwrap();
    items.sort();
    assert_eq!(items, ["f1", "f2"]);
    // Lists containing resources matching X.
    let mut lists = s
        .query_ids(&Query::of("List").and(Expr::ListsContaining(Box::new(
            Query::of("File").where_prop("name", Op::Eq, "f1"),
        ))))
        .unwrap();
    lists.sort();
    assert_eq!(lists, ["holiday", "work"]);
    // Deleting an item removes it from every list and closes the gap.
    s.delete("f1").unwrap();
    assert_eq!(s.list_items("holiday").unwrap().items, ["f2"]);
    assert_eq!(s.list_items("work").unwrap().items, ["f3"]);
    // Reopen: lists persist.
    drop(s);
    let s = open(&dir);
    assert_eq!(s.list_items("holiday").unwrap().items, ["f2"]);
}

#[test]
fn query_backed_list_stays_live() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.create(image("big.png", 5000, 10).with_id("big")).unwrap();
    s.create(image("small.png", 10, 10).with_id("small"))
        .unwrap();
    let q = Query::of("File")
        .where_prop("size", Op::Gt, 1000i64)
        .sort_by("size", true);
    let list = Resource::new("List")
        .with("title", "Big files")
        .with("query", serde_json::to_string(&q).unwrap())
        .with_id("bigfiles");
    s.create(list).unwrap();
    assert_eq!(s.list_items("bigfiles").unwrap().items, ["big"]);
    let seen = events(&mut s, Filter::Id("bigfiles".into()));
    // A new matching resource of a subtype joins.
    s.create(audio("song.flac", 9000).with_id("song")).unwrap();
    assert_eq!(s.list_items("bigfiles").unwrap().items, ["song", "big"]);
    // A change that makes a resource match adds it; one that stops matching removes it.
    s.set_property("small", "size", 2000i64).unwrap();
    assert_eq!(
        s.list_items("bigfiles").unwrap().items,
        ["song", "big", "small"]
    );
    s.set_property("big", "size", 1i64).unwrap();
    assert_eq!(s.list_items("bigfiles").unwrap().items, ["song", "small"]);
    s.delete("song").unwrap();
    assert_eq!(s.list_items("bigfiles").unwrap().items, ["small"]);
    {
        let ev = seen.lock().unwrap();
        let got: Vec<(EventKind, Option<String>)> =
            ev.iter().map(|e| (e.kind, e.item.clone())).collect();
        assert_eq!(
            got,
            [
                (EventKind::ItemAdded, Some("song".into())),
                (EventKind::ItemAdded, Some("small".into())),
                (EventKind::ItemRemoved, Some("big".into())),
                (EventKind::ItemRemoved, Some("song".into())),
            ]
        );
    }
    // Explicit edits are refused; the list is live after reopening too.
    assert!(matches!(
        s.list_insert("bigfiles", "big", None).unwrap_err(),
        StoreError::BadRequest(_)
    ));
    drop(s);
    let mut s = open(&dir);
    s.create(file("huge.iso", 1 << 30).with_id("iso")).unwrap();
    assert_eq!(s.list_items("bigfiles").unwrap().items, ["iso", "small"]);
    // Changing the list's query re-populates it.
    let q2 = Query::of("Image");
    s.set_property("bigfiles", "query", serde_json::to_string(&q2).unwrap())
        .unwrap();
    let mut items = s.list_items("bigfiles").unwrap().items;
    items.sort();
    assert_eq!(items, ["big", "small"]);
    // A query with a list condition stays live when explicit lists change.
    s.create(
        Resource::new("List")
            .with("title", "Favourites")
            .with_id("fav"),
    )
    .unwrap();
    let favq = Query::of("File").and(Expr::ItemsOf(Box::new(Query::of("List").where_prop(
        "title",
        Op::Eq,
        "Favourites",
    ))));
    s.create(
        Resource::new("List")
            .with("query", serde_json::to_string(&favq).unwrap())
            .with_id("favfiles"),
    )
    .unwrap();
    assert!(s.list_items("favfiles").unwrap().items.is_empty());
    s.list_insert("fav", "small", None).unwrap();
    assert_eq!(s.list_items("favfiles").unwrap().items, ["small"]);
    s.list_remove("fav", "small").unwrap();
    assert!(s.list_items("favfiles").unwrap().items.is_empty());
    // A list with a broken query is refused.
    let bad = Resource::new("List").with("query", "{\"type\":\"Nope\"}");
    assert!(matches!(s.create(bad).unwrap_err(), StoreError::Invalid(_)));
}

#[test]
fn filters_have_a_json_form() {
    let f: Filter = serde_json::from_str(r#"{"type":{"name":"File"}}"#).unwrap();
    assert_eq!(
        f,
        Filter::Type {
            name: "File".into(),
            subtypes: true
        }
    );
    let f: Filter = serde_json::from_str(r#""all""#).unwrap();
    assert_eq!(f, Filter::All);
    let f: Filter = serde_json::from_str(r#"{"query":{"type":"Image"}}"#).unwrap();
    assert!(matches!(f, Filter::Query(_)));
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    assert!(
        s.subscribe(Filter::Query(Query::of("Nope")), Arc::new(|_: &Event| {}))
            .is_err()
    );
    let seen = events(&mut s, serde_json::from_str(r#"{"id":"x"}"#).unwrap());
    s.create(file("x", 1).with_id("x")).unwrap();
    let json = serde_json::to_value(&seen.lock().unwrap()[0]).unwrap();
    assert_eq!(json["kind"], "created");
    assert_eq!(json["type"], "File");
    assert_eq!(json["id"], "x");
}

#[test]
fn listeners_by_type_id_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let files = events(
        &mut s,
        Filter::Type {
            name: "File".into(),
            subtypes: true,
        },
    );
    let files_only = events(
        &mut s,
        Filter::Type {
            name: "File".into(),
            subtypes: false,
        },
    );
    let one = events(&mut s, Filter::Id("i1".into()));
    let wide = events(
        &mut s,
        Filter::Query(Query::of("Image").where_prop("width", Op::Gt, 1000i64)),
    );
    s.create(image("a.png", 1, 10).with_id("i1")).unwrap();
    s.create(file("b.txt", 1).with_id("f1")).unwrap();
    s.create(Resource::new("Link").with("url", "x")).unwrap();
    s.set_property("i1", "width", 2000i64).unwrap();
    s.update("i1", &Patch::default().set_meta("rating", 3i64))
        .unwrap();
    s.set_property("i1", "width", 20i64).unwrap();
    s.delete("i1").unwrap();
    let kinds = |v: &Arc<Mutex<Vec<Event>>>| {
        v.lock()
            .unwrap()
            .iter()
            .map(|e| (e.kind, e.id.clone()))
            .collect::<Vec<_>>()
    };
    use EventKind::*;
    assert_eq!(kinds(&files).len(), 6);
    assert_eq!(kinds(&files_only), [(Created, "f1".to_string())]);
    assert_eq!(
        kinds(&one),
        [
            (Created, "i1".into()),
            (Updated, "i1".into()),
            (Updated, "i1".into()),
            (Updated, "i1".into()),
            (Deleted, "i1".into())
        ]
    );
    // Query listener: fires while the resource matches before or after the change.
    assert_eq!(
        kinds(&wide),
        [
            (Updated, "i1".into()),
            (Updated, "i1".into()),
            (Updated, "i1".into())
        ]
    );
    let ev = one.lock().unwrap();
    assert!(ev[2].local, "metadata-only change is local");
    assert!(ev[2].seq.is_none());
    assert!(ev[1].seq.is_some());
    assert_eq!(ev[0].author, ME);
}

struct Thumbnailer;
impl ResourceAdapter for Thumbnailer {
    fn initialise(&self, r: &mut Resource) -> Result<(), String> {
        r.properties
            .entry("format".into())
            .or_insert(Value::String("unknown".into()));
        Ok(())
    }
    fn derive(&self, r: &mut Resource) -> Result<(), String> {
        let name = r
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(ext) = name.rsplit_once('.').map(|(_, e)| e.to_string()) {
            r.properties
                .insert("mimeType".into(), Value::String(format!("image/{ext}")));
        }
        Ok(())
    }
    fn validate(&self, r: &Resource) -> Result<(), String> {
        match r.get("width") {
            Some(Value::Integer(w)) if *w > 100_000 => Err("width is implausible".into()),
            _ => Ok(()),
        }
    }
}

#[test]
fn adapters_initialise_derive_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.register_adapter("Image", Arc::new(Thumbnailer)).unwrap();
    let r = s.create(image("a.png", 1, 10)).unwrap();
    assert_eq!(r.get("format"), Some(&Value::String("unknown".into())));
    assert_eq!(r.get("mimeType"), Some(&Value::String("image/png".into())));
    let r = s.set_property(&r.id, "name", "a.gif").unwrap();
    assert_eq!(r.get("mimeType"), Some(&Value::String("image/gif".into())));
    let e = s.create(image("b.png", 1, 1_000_000)).unwrap_err();
    assert!(matches!(e, StoreError::Adapter { .. }), "{e}");
    // Not applied to other types.
    let f = s.create(file("c.png", 1)).unwrap();
    assert!(f.get("mimeType").is_none());
}

const PHOTO_V1: &str = r#"<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1" ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <define name="Photo.content" ap:type="Photo" ap:extends="Image">
    <interleave>
      <ref name="Image.content"/>
      <optional><element name="camera" ap:index="true"><data type="string"/></element></optional>
    </interleave>
  </define>
</grammar>"#;

#[test]
fn schema_registration_and_evolution() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = open(&dir);
        s.register_schema("Photo.rng", PHOTO_V1).unwrap();
        s.create(
            Resource::new("Photo")
                .with("name", "p.jpg")
                .with("camera", "X100")
                .with_id("p1"),
        )
        .unwrap();
        // Queries on File see it (polymorphic), and on its own property.
        assert_eq!(s.query_ids(&Query::of("File")).unwrap(), ["p1"]);
        assert_eq!(
            s.query_ids(&Query::of("Photo").where_prop("camera", Op::Eq, "X100"))
                .unwrap(),
            ["p1"]
        );
        // A bad schema is refused, registry and database unchanged.
        let bad = PHOTO_V1.replace("string", "frobnicate");
        let e = s.register_schema("Photo.rng", &bad).unwrap_err();
        assert!(
            e.to_string()
                .contains("Photo.rng:5: unknown datatype 'frobnicate'"),
            "{e}"
        );
        let bad = PHOTO_V1.replace(r#"<optional><element name="camera" ap:index="true"><data type="string"/></element></optional>"#, "");
        let e = s.register_schema("Photo.rng", &bad).unwrap_err();
        assert!(e.to_string().contains("would be lost"), "{e}");
        assert!(s.registry().prop("Photo", "camera").is_some());
    }
    // Registered schemas survive a reopen; evolution adds a column and keeps the data.
    let mut s = open(&dir);
    assert!(s.registry().get("Photo").is_some());
    let v2 = PHOTO_V1.replace(
        "</interleave>",
        r#"  <optional><element name="lens"><data type="string"/></element></optional>
    </interleave>"#,
    );
    s.register_schema("Photo.rng", &v2).unwrap();
    let p = s.get("p1").unwrap().unwrap();
    assert_eq!(p.get("camera"), Some(&Value::String("X100".into())));
    s.set_property("p1", "lens", "23mm").unwrap();
    drop(s);
    let s = open(&dir);
    let p = s.get("p1").unwrap().unwrap();
    assert_eq!(p.get("lens"), Some(&Value::String("23mm".into())));
    assert_eq!(p.get("camera"), Some(&Value::String("X100".into())));
}

#[test]
fn change_log_records_everything_but_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.set_clock(Box::new(|| 1_000));
    s.create(file("a", 1).with_id("a")).unwrap();
    s.create(Resource::new("List").with_id("l")).unwrap();
    s.set_property("a", "size", 2i64).unwrap();
    s.update("a", &Patch::default().set_meta("rating", 1i64))
        .unwrap();
    s.list_insert("l", "a", None).unwrap();
    s.delete("a").unwrap();
    let log = s.changes_since(0, 100).unwrap();
    let ops: Vec<(&str, &str)> = log.iter().map(|c| (c.op.as_str(), c.id.as_str())).collect();
    assert_eq!(
        ops,
        [
            ("create", "a"),
            ("create", "l"),
            ("update", "a"),
            ("list.insert", "l"),
            ("delete", "a")
        ]
    );
    assert!(log.iter().all(|c| c.author == ME && c.time == 1_000));
    assert_eq!(log[2].data["properties"]["size"], 2);
    assert!(log[0].data.to_string().find("rating").is_none());
    assert_eq!(s.changes_since(log[3].seq, 10).unwrap().len(), 1);
}

/// Child side of the crash test: writes until killed.
#[test]
fn crash_child_writer() {
    let Ok(path) = std::env::var("ALLPEERS_STORE_CRASH_DB") else {
        return;
    };
    let mut s = Store::open(&path, ME).unwrap();
    let mut i = 0i64;
    // Never outlive a parent that failed to kill us.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        // Alternate single writes (create + update) with batches of CRASH_BATCH in one
        // transaction, so a kill often lands inside a large transaction.
        let m = Resource::new("Message")
            .with("sender", ME)
            .with("sent", i)
            .with("body", "x".repeat(2000))
            .with_child("receipt", Child::default().with("peer", "p"));
        let m = s.create(m).unwrap();
        s.set_property(&m.id, "body", "y".repeat(3000)).unwrap();
        let batch: Vec<Resource> = (0..CRASH_BATCH)
            .map(|k| {
                Resource::new("Message")
                    .with("sender", ME)
                    .with("sent", i * 1000 + k)
                    .with("body", "z".repeat(2000))
                    .with("chat", "batch")
                    .with_child("receipt", Child::default().with("peer", "q"))
            })
            .collect();
        s.create_many(batch).unwrap();
        i += 1;
        if i == 5 {
            println!("READY");
        }
    }
}

const CRASH_BATCH: i64 = 200;

#[test]
fn reopen_after_kill_mid_write() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    for round in 0..3 {
        struct Guard(std::process::Child);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ALLPEERS_STORE_CRASH_DB", &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut child = Guard(child);
        let mut lines = BufReader::new(out).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("READY") => break,
                Some(Ok(_)) => continue,
                other => panic!("child ended early: {other:?}"),
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(150 + round * 70));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        let s = Store::open(&db, ME).unwrap();
        assert_eq!(s.integrity_check().unwrap(), "ok");
        let n = count_rows(&s, "t_Resource");
        assert!(n >= 5 * (CRASH_BATCH + 1), "{n}");
        // Batches are all or nothing.
        let batched = s
            .count(&Query::of("Message").where_prop("chat", Op::Eq, "batch"))
            .unwrap() as i64;
        assert_eq!(
            batched % CRASH_BATCH,
            0,
            "a batch was half-applied: {batched}"
        );
        // Every resource is whole: a row in each of its tables, its child, its create in the log.
        assert_eq!(count_rows(&s, "t_Message"), n);
        assert_eq!(count_rows(&s, "c_Receipt"), n);
        let creates: i64 = s
            .connection()
            .query_row(
                "SELECT count(*) FROM ap_changes WHERE op='create'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(creates, n);
        for m in s
            .query(&Query::of("Message").sort_by("sent", true).limit(3))
            .unwrap()
        {
            let body = m.get("body").and_then(Value::as_str).unwrap();
            assert!(
                body == "x".repeat(2000) || body == "y".repeat(3000) || body == "z".repeat(2000)
            );
        }
    }
}

/// Every operator on every property of every built-in type compiles to SQL that runs.
#[test]
fn every_operator_on_every_property_runs() {
    use allpeers_model::schema::DataType;
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.create(image("a.png", 1, 2).with_meta("rating", 1i64))
        .unwrap();
    let reg = s.registry().clone();
    let ops = [
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::Prefix,
        Op::Contains,
        Op::IsNull,
        Op::NotNull,
    ];
    let mut ran = 0;
    for t in reg.types().filter(|t| !t.anonymous) {
        let props: Vec<_> = reg
            .all_props(&t.name)
            .into_iter()
            .map(|(_, p)| p.clone())
            .collect();
        let metas: Vec<_> = reg.meta_props(&t.name).into_iter().cloned().collect();
        for (is_meta, p) in props
            .iter()
            .map(|p| (false, p))
            .chain(metas.iter().map(|p| (true, p)))
        {
            let v: Value = match p.datatype {
                DataType::Boolean => true.into(),
                DataType::Integer => 3i64.into(),
                DataType::Decimal => 1.5f64.into(),
                DataType::Date => "2026-01-01T00:00:00Z".into(),
                DataType::Binary => "AAEC".into(),
                DataType::String => "x'\"".into(),
            };
            for op in ops {
                let e = if is_meta {
                    Expr::meta(&p.name, op, v.clone())
                } else {
                    Expr::prop(&p.name, op, v.clone())
                };
                let q = Query::of(&t.name).and(Expr::Not(Box::new(Expr::Any(vec![
                    e,
                    Expr::IsA(t.name.clone()),
                ]))));
                match s.count(&q) {
                    Ok(_) => ran += 1,
                    Err(StoreError::Query(_)) => {} // operator not applicable to the datatype
                    Err(e) => panic!("{} {} {:?}: {e}", t.name, p.name, op),
                }
            }
            if !p.multi && !is_meta {
                s.query(&Query::of(&t.name).sort_by(&p.name, true).limit(1))
                    .unwrap();
            }
        }
    }
    assert!(ran > 500, "{ran}");
}

#[test]
fn store_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Store>();
}

const ALBUM: &str = r#"<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1" ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
<define name="Album.content" ap:type="Album" ap:extends="List">
  <interleave>
    <ref name="List.content"/>
    <zeroOrMore><element name="track"><ref name="Track.content"/></element></zeroOrMore>
  </interleave>
</define>
<define name="Track.content" ap:type="Track" ap:anonymous="true">
  <interleave>
    <element name="n"><data type="long"/></element>
    <zeroOrMore><element name="credit"><ref name="Credit.content"/></element></zeroOrMore>
  </interleave>
</define>
<define name="Credit.content" ap:type="Credit" ap:anonymous="true">
  <element name="who"><data type="string"/></element>
</define>
</grammar>"#;

#[test]
fn nested_children_round_trip_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.register_schema("Album.rng", ALBUM).unwrap();
    let credit = |w: &str| Child::default().with("who", w);
    let mut t1 = Child::default().with("n", 1i64);
    t1.children
        .insert("credit".into(), vec![credit("Bach"), credit("Gould")]);
    let mut t2 = Child::default().with("n", 2i64);
    t2.children.insert("credit".into(), vec![credit("Bach")]);
    let a = Resource::new("Album")
        .with_id("album")
        .with("title", "Goldberg")
        .with_child("track", t1)
        .with_child("track", t2);
    let created = s.create(a).unwrap();
    drop(s);
    let mut s = open(&dir);
    let back = s.get("album").unwrap().unwrap();
    assert_eq!(back, created);
    assert_eq!(
        back.children["track"][0].children["credit"][1].properties["who"],
        Value::String("Gould".into())
    );
    // An Album is a List: it can hold items.
    s.create(file("aria.flac", 1).with_id("aria")).unwrap();
    s.list_insert("album", "aria", None).unwrap();
    // Replacing the child slot replaces every nested row.
    let mut patch = Patch::default();
    patch
        .children
        .insert("track".into(), vec![Child::default().with("n", 9i64)]);
    s.update("album", &patch).unwrap();
    let back = s.get("album").unwrap().unwrap();
    assert_eq!(back.children["track"].len(), 1);
    assert!(back.children["track"][0].children.is_empty());
    assert_eq!(count_rows(&s, "c_Credit"), 0);
    // Invalid nested values are refused with a precise path.
    let mut bad = Child::default().with("n", 1i64);
    bad.children
        .insert("credit".into(), vec![Child::default().with("who", 3i64)]);
    let mut patch = Patch::default();
    patch.children.insert("track".into(), vec![bad]);
    let e = s.update("album", &patch).unwrap_err();
    assert!(
        e.to_string()
            .contains("children.track[0].children.credit[0].properties.who"),
        "{e}"
    );
    s.delete("album").unwrap();
    assert_eq!(count_rows(&s, "c_Track"), 0);
}

/// A write that fails inside its transaction rolls back whole, and no listener hears of the
/// part that had already been written: the events it collected die with the transaction.
#[test]
fn a_failed_write_fires_no_event_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.create(file("taken", 1).with_id("taken")).unwrap();
    s.create(file("outside", 2).with_id("outside")).unwrap();
    s.create(Resource::new("List").with("title", "Mine").with_id("mine"))
        .unwrap();
    let all_files = serde_json::to_string(&Query::of("File")).unwrap();
    s.create(
        Resource::new("List")
            .with("query", all_files)
            .with_id("files"),
    )
    .unwrap();
    s.list_insert("mine", "taken", None).unwrap();
    let seen = events(&mut s, Filter::All);
    let log = s.changes_since(0, 1000).unwrap();
    let resources = count_rows(&s, "t_Resource");
    let items = count_rows(&s, "ap_list_items");
    let files = s.list_items("files").unwrap().items;

    // The batch's first File is written (and joins the query-backed list) before the second
    // one's id turns out to be taken.
    let err = s
        .create_many(vec![
            file("fresh", 3).with_id("fresh"),
            file("again", 4).with_id("taken"),
        ])
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Exists(ref id) if id == "taken"),
        "{err}"
    );
    // Already in the list; not in the list (twice).
    assert!(matches!(
        s.list_insert("mine", "taken", Some(0)).unwrap_err(),
        StoreError::Exists(_)
    ));
    assert!(matches!(
        s.list_move("mine", "outside", 0).unwrap_err(),
        StoreError::NotFound(_)
    ));
    assert!(matches!(
        s.list_remove("mine", "outside").unwrap_err(),
        StoreError::NotFound(_)
    ));

    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(s.get("fresh").unwrap(), None);
    assert_eq!(count_rows(&s, "t_Resource"), resources);
    assert_eq!(count_rows(&s, "t_File"), 2);
    assert_eq!(count_rows(&s, "ap_list_items"), items);
    assert_eq!(s.list_items("files").unwrap().items, files);
    assert_eq!(s.list_items("mine").unwrap().items, ["taken"]);
    assert_eq!(s.changes_since(0, 1000).unwrap(), log);
    // The store goes on: the next write is heard.
    s.create(file("fresh", 3).with_id("fresh")).unwrap();
    let kinds: Vec<EventKind> = seen.lock().unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Created, EventKind::ItemAdded]);
}

#[test]
fn get_many_reads_what_get_reads_in_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let message = Resource::new("Message")
        .with_id("m")
        .with("sender", ME)
        .with("sent", "2026-11-25T03:00:00Z")
        .with("body", "hello")
        .with_child("receipt", Child::default().with("peer", "p1"))
        .with_meta("read", true);
    s.create(message).unwrap();
    s.create(image("a.png", 1, 2).with_id("i").with_meta("rating", 4i64))
        .unwrap();
    // More than one statement's batch of ids, of several types.
    let mut ids: Vec<String> = vec!["i".into(), "nowhere".into(), "m".into()];
    for n in 0..1_201 {
        let r = if n % 3 == 0 {
            audio(&format!("{n}.flac"), n)
        } else {
            file(&format!("{n}"), n)
        };
        ids.push(s.create(r).unwrap().id);
    }
    ids.push("i".into());
    let many = s.get_many(&ids).unwrap();
    let one_by_one: Vec<Resource> = ids[..ids.len() - 1]
        .iter()
        .filter_map(|id| s.get(id).unwrap())
        .collect();
    assert_eq!(
        many.len(),
        ids.len() - 2,
        "the missing id and the repeat are skipped"
    );
    assert_eq!(many, one_by_one);
    assert!(s.get_many(&[]).unwrap().is_empty());
}
