//! The JSON face of the store that the daemon routes `resources.*`, `lists.*`, `schemas.*` to.

use allpeers_store::Store;
use allpeers_store::api::{ApiError, handle};
use serde_json::{Value, json};

fn call(s: &mut Store, method: &str, params: Value) -> Result<Value, ApiError> {
    handle(s, method, params).expect("method handled")
}

#[test]
fn json_round_trip_of_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path().join("s.db"), "ap-me").unwrap();
    let img = call(&mut s, "resources.create", json!({"resource": {"type": "Image", "properties": {"name": "a.png", "size": 10, "width": 5, "taken": "2026-01-01T00:00:00Z"}}})).unwrap();
    let id = img["id"].as_str().unwrap().to_string();
    assert_eq!(img["properties"]["taken"], "2026-01-01T00:00:00.000Z");
    assert_eq!(img["properties"]["owner"], "ap-me");
    let got = call(&mut s, "resources.get", json!({"id": id})).unwrap();
    assert_eq!(got, img);
    assert_eq!(
        call(&mut s, "resources.get", json!({"id": "nope"})).unwrap(),
        Value::Null
    );
    let up = call(&mut s, "resources.update", json!({"id": id, "patch": {"properties": {"size": 99, "taken": null}, "meta": {"rating": 4}}})).unwrap();
    assert_eq!(up["properties"]["size"], 99);
    assert!(up["properties"].get("taken").is_none());
    assert_eq!(up["meta"]["rating"], 4);
    let q = json!({"query": {"type": "File", "where": [{"prop": {"name": "size", "op": ">", "value": 50}}]}});
    let r = call(&mut s, "resources.query", q.clone()).unwrap();
    assert_eq!(r["resources"][0]["id"], id.as_str());
    let mut ids = q.clone();
    ids["ids_only"] = json!(true);
    assert_eq!(
        call(&mut s, "resources.query", ids).unwrap()["ids"],
        json!([id])
    );
    assert_eq!(
        call(
            &mut s,
            "resources.count",
            json!({"query": {"type": "File"}})
        )
        .unwrap(),
        1
    );
    call(
        &mut s,
        "resources.create",
        json!({"resource": {"id": "l", "type": "List", "properties": {"title": "L"}}}),
    )
    .unwrap();
    assert_eq!(
        call(&mut s, "lists.insert", json!({"list": "l", "item": id})).unwrap(),
        0
    );
    assert_eq!(
        call(&mut s, "lists.items", json!({"id": "l"})).unwrap()["items"],
        json!([id])
    );
    assert_eq!(
        call(
            &mut s,
            "lists.move",
            json!({"list": "l", "item": id, "index": 0})
        )
        .unwrap(),
        0
    );
    call(&mut s, "lists.remove", json!({"list": "l", "item": id})).unwrap();
    let names = call(&mut s, "schemas.list", Value::Null).unwrap();
    assert!(names.as_array().unwrap().iter().any(|n| n == "Share"));
    let d = call(&mut s, "schemas.describe", json!({"type": "File"})).unwrap();
    assert_eq!(d["subtypes"].as_array().unwrap().len(), 5);
    call(&mut s, "resources.delete", json!({"id": id})).unwrap();
    assert!(handle(&mut s, "chat.send", Value::Null).is_none());
}

#[test]
fn errors_carry_codes_and_details() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path().join("s.db"), "ap-me").unwrap();
    let e = call(
        &mut s,
        "resources.create",
        json!({"resource": {"type": "Image", "properties": {"width": "wide"}}}),
    )
    .unwrap_err();
    assert_eq!(e.code, -32010);
    let errs = e.data.unwrap()["errors"].as_array().unwrap().clone();
    assert!(
        errs.iter()
            .any(|x| x["path"] == "properties.width" && x["reason"] == "expected integer")
    );
    assert!(errs.iter().any(|x| x["path"] == "properties.name"));
    assert_eq!(
        call(&mut s, "resources.delete", json!({"id": "nope"}))
            .unwrap_err()
            .code,
        -32011
    );
    assert_eq!(
        call(&mut s, "resources.get", json!({"idd": "x"}))
            .unwrap_err()
            .code,
        -32602
    );
    let e = call(&mut s, "schemas.register", json!({"file": "Bad.rng", "text": "<grammar xmlns=\"http://relaxng.org/ns/structure/1.0\">\n<x>"})).unwrap_err();
    assert_eq!(e.code, -32013);
    let data = e.data.unwrap();
    assert_eq!(data["file"], "Bad.rng");
    assert!(data["line"].as_u64().unwrap() >= 1);
    let e = call(&mut s, "resources.query", json!({"query": {"type": "File", "where": [{"prop": {"name": "x'; DROP TABLE t_File; --", "op": "=", "value": 1}}]}})).unwrap_err();
    assert_eq!(e.code, -32014);
    assert_eq!(e.data.unwrap()["path"], "where[0].prop");
}
