//! The resource framework through the daemon's local API: typed resources in the real
//! store, polymorphic queries, lists, per-client subscriptions, schemas registered at run
//! time, persistence across a restart, hostile input as data.

use allpeers_tests::*;
use serde_json::json;

const NOTE_SCHEMA: &str = r#"<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1"
         ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <include href="Resource.rng"><start><ref name="Note"/></start></include>
  <define name="Note"><element name="Note"><ref name="Note.content"/></element></define>
  <define name="Note.content" ap:type="Note" ap:extends="Resource" ap:title="Note">
    <interleave>
      <ref name="Resource.content"/>
      <element name="body"><data type="string"/></element>
      <optional><element name="stars" ap:index="true"><data type="long"/></element></optional>
    </interleave>
  </define>
</grammar>"#;

#[tokio::test]
async fn resources_queries_lists_and_events_over_the_local_api() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let mut app = daemon.client("app").await;
    let mut watcher = daemon.client("watcher").await;

    let sub = watcher
        .call(
            "resources.subscribe",
            json!({"filter": {"type": {"name": "File"}}}),
        )
        .await
        .result
        .unwrap();
    let subscription = sub["subscription"].as_u64().unwrap();

    let image = app
        .call("resources.create", json!({"resource": {"type": "Image", "properties": {"name": "beach.png", "size": 2048, "width": 640}}}))
        .await
        .result
        .expect("image created");
    let image_id = image["id"].as_str().unwrap().to_string();
    assert_eq!(
        image["properties"]["owner"],
        app.hello("app").await["peer_id"],
        "owner is the node"
    );
    app.call("resources.create", json!({"resource": {"type": "Link", "properties": {"url": "https://example.org/", "title": "Example"}}}))
        .await
        .result
        .expect("link created");

    // The watcher hears about the Image (a File), not the Link.
    let (_, event) = timeout("resource event", watcher.read_notification())
        .await
        .unwrap();
    assert_eq!(event["topic"], "resource.changed");
    assert_eq!(event["data"]["kind"], "created");
    assert_eq!(event["data"]["id"], image_id.as_str());
    assert_eq!(event["data"]["subscription"], subscription);

    // A query on File returns the Image (polymorphism), with an indexed condition.
    let files = app
        .call("resources.query", json!({"query": {"type": "File", "where": [{"prop": {"name": "size", "op": ">", "value": 1000}}]}}))
        .await
        .result
        .unwrap();
    assert_eq!(files["resources"].as_array().unwrap().len(), 1);
    assert_eq!(files["resources"][0]["type"], "Image");
    let count = app
        .call("resources.count", json!({"query": {"type": "Resource"}}))
        .await
        .result
        .unwrap();
    assert_eq!(count, 2);

    // A resource that breaks its schema is refused with the property named; nothing written.
    let bad = app
        .call(
            "resources.create",
            json!({"resource": {"type": "Image", "properties": {"name": "x", "width": "wide"}}}),
        )
        .await;
    assert_eq!(error_code(&bad), -32010);
    let errors = bad.error.unwrap().data.unwrap()["errors"].to_string();
    assert!(errors.contains("width"), "{errors}");
    let count = app
        .call("resources.count", json!({"query": {"type": "Resource"}}))
        .await
        .result
        .unwrap();
    assert_eq!(count, 2);

    // Hostile strings in a query are data, never SQL.
    let hostile = app
        .call("resources.query", json!({"query": {"type": "File", "where": [{"prop": {"name": "name", "op": "=", "value": "x'; DROP TABLE t_Resource; --"}}]}}))
        .await
        .result
        .unwrap();
    assert_eq!(hostile["resources"], json!([]));
    let hostile_name = app
        .call("resources.query", json!({"query": {"type": "File", "where": [{"prop": {"name": "name\"; DROP TABLE t_File; --", "op": "=", "value": 1}}]}}))
        .await;
    assert_eq!(
        error_code(&hostile_name),
        -32014,
        "an unknown property is a query error"
    );

    // An explicit list, watched by id.
    let list = app
        .call(
            "resources.create",
            json!({"resource": {"type": "List", "properties": {"title": "Holiday"}}}),
        )
        .await
        .result
        .unwrap();
    let list_id = list["id"].as_str().unwrap().to_string();
    watcher
        .call("resources.subscribe", json!({"filter": {"id": list_id}}))
        .await
        .result
        .unwrap();
    app.call("lists.insert", json!({"list": list_id, "item": image_id}))
        .await
        .result
        .unwrap();
    let items = app
        .call("lists.items", json!({"id": list_id}))
        .await
        .result
        .unwrap();
    assert_eq!(items["items"], json!([image_id]));
    let (_, list_event) = timeout("list event", watcher.read_notification())
        .await
        .unwrap();
    assert_eq!(list_event["topic"], "list.changed");
    assert_eq!(list_event["data"]["kind"], "itemAdded");
    assert_eq!(list_event["data"]["item"], image_id.as_str());

    // "Lists containing resources matching X".
    let containing = app
        .call(
            "resources.query",
            json!({"query": {"type": "List", "where": [{"listsContaining": {"type": "Image"}}]}}),
        )
        .await
        .result
        .unwrap();
    assert_eq!(containing["resources"][0]["id"], list_id.as_str());

    // Unsubscribing stops the events; someone else's subscription cannot be cancelled.
    assert_eq!(
        app.call(
            "resources.unsubscribe",
            json!({"subscription": subscription})
        )
        .await
        .result
        .unwrap(),
        false
    );
    assert_eq!(
        watcher
            .call(
                "resources.unsubscribe",
                json!({"subscription": subscription})
            )
            .await
            .result
            .unwrap(),
        true
    );
    daemon.stop().await;
}

#[tokio::test]
async fn app_schemas_register_at_run_time_and_everything_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let mut app = daemon.client("app").await;
    app.call("events.subscribe", json!({"topics": ["schema.changed"]}))
        .await
        .result
        .unwrap();

    let bad = app
        .call(
            "schemas.register",
            json!({"file": "Broken.rng", "text": "<grammar><define"}),
        )
        .await;
    assert_eq!(error_code(&bad), -32013);
    assert!(bad.error.unwrap().message.contains("Broken.rng"));

    let registered = app
        .call(
            "schemas.register",
            json!({"file": "Note.rng", "text": NOTE_SCHEMA}),
        )
        .await
        .result
        .unwrap();
    assert_eq!(registered["types"], json!(["Note"]));
    let (_, event) = timeout("schema event", app.read_notification())
        .await
        .unwrap();
    assert_eq!(event["topic"], "schema.changed");
    let note = app
        .call("resources.create", json!({"resource": {"type": "Note", "properties": {"body": "hello", "stars": 4, "title": "first"}}}))
        .await
        .result
        .expect("a note");
    let described = app
        .call("schemas.describe", json!({"type": "Note"}))
        .await
        .result
        .unwrap();
    assert_eq!(described["lineage"], json!(["Resource", "Note"]));
    daemon.stop().await;

    let daemon = Daemon::start(dir.path()).await;
    let mut app = daemon.client("app").await;
    let again = app
        .call("resources.get", json!({"id": note["id"]}))
        .await
        .result
        .unwrap();
    assert_eq!(again["properties"]["body"], "hello");
    let found = app
        .call("resources.query", json!({"query": {"type": "Note", "where": [{"prop": {"name": "stars", "op": ">=", "value": 4}}]}}))
        .await
        .result
        .unwrap();
    assert_eq!(found["resources"].as_array().unwrap().len(), 1);
    daemon.stop().await;
}
