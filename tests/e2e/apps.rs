//! Web apps on the local API (issue 21), with real daemons (and a real hub for two users):
//! an app session is bound to its origin at `hello` (bad origins refused), is served only the
//! app-facing methods (a trusted one: 4200), each behind its scope (4100 before the grant);
//! the origin's sessions share one rate limit (-32080); grants survive a restart and are
//! revoked from the CLI. Between two users: alice's app reads identity and contacts, registers
//! its type, creates a resource and shares it with bob; bob's app of the same origin sees it
//! arrive; another origin can neither read it, nor register into the first's namespace, nor
//! read built-in types; a revoke takes effect at once, for calls and for subscriptions. A share
//! brings its app's schema to a node that never registered it (and a later version with the
//! edit that needs it); an app session's hello names no PeerId.

use std::time::Duration;

use allpeers_model::api::Response;
use allpeers_tests::social::*;
use allpeers_tests::*;
use serde_json::{Value, json};

const ORIGIN: &str = "https://todo.example";
const EVIL: &str = "https://evil.example";
const ALL_SCOPES: &[&str] = &[
    "identity",
    "contacts:read",
    "presence",
    "messages:send",
    "resources",
    "shares",
];
/// How long a revoked app session must hear nothing after the node saw the change.
const QUIET: Duration = Duration::from_secs(2);

fn todo_schema(namespace: &str, name: &str) -> String {
    todo_schema_with(namespace, name, "")
}

/// The Todo schema with `more` (RELAX NG) among its properties: a later version.
fn todo_schema_with(namespace: &str, name: &str, more: &str) -> String {
    format!(
        r#"<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1"
         ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <include href="Resource.rng"><start><ref name="{namespace}{name}"/></start></include>
  <define name="{namespace}{name}"><element name="{namespace}{name}"><ref name="{namespace}{name}.content"/></element></define>
  <define name="{namespace}{name}.content" ap:type="{namespace}{name}" ap:extends="Resource" ap:title="{name}">
    <interleave>
      <ref name="Resource.content"/>
      <optional><element name="done"><data type="boolean"/></element></optional>{more}
    </interleave>
  </define>
</grammar>"#
    )
}

/// An app session: a connection whose hello names `origin`.
async fn app_session(daemon: &Daemon, origin: &str) -> Client {
    let mut app = daemon.connect().await;
    let hello = app
        .call(
            "hello",
            json!({"client": "extension/app", "api_version": 1, "origin": origin}),
        )
        .await;
    let hello = ok(hello);
    assert!(
        hello.get("peer_id").is_none(),
        "an app session's hello names nobody: {hello}"
    );
    let methods = hello["methods"].as_array().unwrap();
    assert!(methods.contains(&json!("permissions.get")), "{hello}");
    assert!(!methods.contains(&json!("apps.grant")), "{hello}");
    app
}

fn code(response: &Response) -> i32 {
    error_code(response)
}

async fn grant(client: &mut Client, origin: &str, scopes: &[&str]) -> Value {
    ok(client
        .call("apps.grant", json!({"origin": origin, "scopes": scopes}))
        .await)
}

#[tokio::test]
async fn app_sessions_are_bound_at_hello_confined_scoped_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;

    // Bad origins at hello: -32081, and the session stays before hello.
    for bad in [
        "null",
        "https://Example.com",
        "http://example.com",
        "https://a.example/path",
        "https://a.example:443",
        "file:///etc/passwd",
        "chrome-extension://short",
        "",
    ] {
        let mut session = daemon.connect().await;
        let hello = session
            .call(
                "hello",
                json!({"client": "x", "api_version": 1, "origin": bad}),
            )
            .await;
        assert_eq!(code(&hello), -32081, "{bad:?}");
        let after = session.call("permissions.get", json!({})).await;
        assert_eq!(code(&after), -32000, "{bad:?}: still before hello");
    }
    // A trusted session cannot become an app session, nor an app session drop its origin.
    let mut trusted = daemon.client("settings").await;
    let rebind = trusted
        .call(
            "hello",
            json!({"client": "x", "api_version": 1, "origin": ORIGIN}),
        )
        .await;
    assert_eq!(code(&rebind), -32081);
    let mut app = app_session(&daemon, ORIGIN).await;
    let unbind = app
        .call("hello", json!({"client": "x", "api_version": 1}))
        .await;
    assert_eq!(code(&unbind), -32081);

    // Only app-facing methods; each behind its scope.
    for method in [
        "apps.grant",
        "apps.list",
        "status.get",
        "resources.count",
        "chat.list",
        "nope",
    ] {
        let r = app
            .call(method, json!({"origin": ORIGIN, "scopes": ALL_SCOPES}))
            .await;
        assert_eq!(code(&r), 4200, "{method}");
    }
    let before = app.call("identity.get", json!({})).await;
    assert_eq!(code(&before), 4100);
    assert!(before.error.unwrap().message.contains("identity"));
    let perms = ok(app.call("permissions.get", json!({})).await);
    assert_eq!(perms["scopes"], json!([]));
    let namespace = perms["namespace"].as_str().unwrap().to_string();
    assert!(namespace.starts_with("app_"), "{perms}");
    let request = app
        .call("permissions.request", json!({"scopes": ["identity"]}))
        .await;
    assert_eq!(code(&request), 4100);

    let bad_grant = trusted
        .call("apps.grant", json!({"origin": ORIGIN, "scopes": ["root"]}))
        .await;
    assert_eq!(code(&bad_grant), -32602);
    let entry = grant(&mut trusted, ORIGIN, &["identity"]).await;
    assert_eq!(entry["scopes"], json!(["identity"]));
    let me = ok(app.call("identity.get", json!({})).await);
    assert!(me["peer_id"].as_str().unwrap().starts_with("ap"), "{me}");
    assert_eq!(
        me.as_object().unwrap().len(),
        1,
        "peer_id (and name) only: {me}"
    );
    let contacts = app.call("contacts.list", json!({})).await;
    assert_eq!(code(&contacts), 4100);
    ok(app
        .call("permissions.request", json!({"scopes": ["identity"]}))
        .await);
    // Topics: only the app ones, each behind its scope.
    let presence = app
        .call("events.subscribe", json!({"topics": ["presence.changed"]}))
        .await;
    assert_eq!(code(&presence), 4100);
    for topic in ["message.received", "apps.changed", "resource.changed"] {
        let r = app
            .call("events.subscribe", json!({"topics": [topic]}))
            .await;
        assert_eq!(code(&r), -32602, "{topic}");
    }

    // A flood: one bucket for the origin, shared by its sessions.
    for _ in 0..400 {
        app.send_json(&json!({"jsonrpc": "2.0", "id": 1, "method": "permissions.get"}))
            .await;
    }
    let mut limited = 0;
    for _ in 0..400 {
        let r = timeout("flood answer", app.read_response()).await.unwrap();
        if r.error.as_ref().is_some_and(|e| e.code == -32080) {
            limited += 1;
        }
    }
    assert!(limited > 0, "400 calls at once went unlimited");
    let mut second = app_session(&daemon, ORIGIN).await;
    let mut limited_second = 0;
    for _ in 0..150 {
        let r = second.call("permissions.get", json!({})).await;
        if r.error.as_ref().is_some_and(|e| e.code == -32080) {
            limited_second += 1;
        }
    }
    assert!(
        limited_second > 0,
        "a second session of the origin has a bucket of its own"
    );
    // Another origin is not held back by this one.
    let mut other = app_session(&daemon, EVIL).await;
    ok(other.call("permissions.get", json!({})).await);

    // The grant survives a restart; the CLI lists and revokes it.
    drop((app, second, other, trusted));
    daemon.stop().await;
    let daemon = Daemon::start(dir.path()).await;
    let listed = timeout(
        "allpeers apps",
        allpeers(dir.path()).args(["apps"]).output(),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && text.contains(ORIGIN) && text.contains("identity"),
        "{listed:?}"
    );
    let mut app = app_session(&daemon, ORIGIN).await;
    ok(app.call("identity.get", json!({})).await);
    let revoked = timeout(
        "allpeers apps revoke",
        allpeers(dir.path())
            .args(["apps", "revoke", ORIGIN])
            .output(),
    )
    .await
    .unwrap();
    assert!(revoked.status.success(), "{revoked:?}");
    let after = app.call("identity.get", json!({})).await;
    assert_eq!(code(&after), 4100);
    let mut trusted = daemon.client("settings").await;
    assert_eq!(ok(trusted.call("apps.list", json!({})).await), json!([]));
    daemon.stop().await;
}

#[tokio::test]
async fn apps_share_their_own_resources_and_nothing_else() {
    let mut pair = Pair::start().await;
    let alice_daemon = pair.alice.daemon.as_ref().unwrap();
    let bob_daemon = pair.bob.daemon.as_ref().unwrap();
    let mut alice_app = app_session(alice_daemon, ORIGIN).await;
    let mut bob_app = app_session(bob_daemon, ORIGIN).await;
    let mut evil = app_session(alice_daemon, EVIL).await;

    // Before the grant: nothing.
    assert_eq!(code(&alice_app.call("identity.get", json!({})).await), 4100);
    grant(&mut pair.alice.client, ORIGIN, ALL_SCOPES).await;
    grant(&mut pair.bob.client, ORIGIN, ALL_SCOPES).await;
    grant(&mut pair.alice.client, EVIL, ALL_SCOPES).await;

    // Identity and contacts.
    let me = ok(alice_app.call("identity.get", json!({})).await);
    assert_eq!(me["peer_id"], pair.alice.id.as_str());
    assert_eq!(me["name"], "alice@hub.test");
    let contacts = ok(alice_app.call("contacts.list", json!({})).await);
    assert_eq!(contacts.as_array().unwrap().len(), 1, "{contacts}");
    assert_eq!(contacts[0]["peer_id"], pair.bob.id.as_str());
    assert_eq!(contacts[0]["name"], "bob@hub.test");
    assert_eq!(contacts[0]["online"], true, "{contacts}");
    assert!(contacts[0].get("request_message").is_none());

    // The app's type, in its namespace; both sides register it (same origin, same names).
    let perms = ok(alice_app.call("permissions.get", json!({})).await);
    let namespace = perms["namespace"].as_str().unwrap().to_string();
    let todo_type = format!("{namespace}Todo");
    let registered = ok(alice_app
        .call(
            "schemas.register",
            json!({"schema": todo_schema(&namespace, "Todo")}),
        )
        .await);
    assert_eq!(registered["types"], json!([todo_type]));
    ok(bob_app
        .call(
            "schemas.register",
            json!({"schema": todo_schema(&namespace, "Todo")}),
        )
        .await);
    let outside = alice_app
        .call(
            "schemas.register",
            json!({"schema": todo_schema("", "Todo"), "file": "plain"}),
        )
        .await;
    assert_eq!(code(&outside), -32013);

    // A resource of its type; none of another.
    let todo = ok(alice_app
        .call(
            "resources.create",
            json!({"resource": {"type": todo_type, "properties": {"title": "buy milk"}}}),
        )
        .await);
    let todo_id = todo["id"].as_str().unwrap().to_string();
    let link = alice_app
        .call(
            "resources.create",
            json!({"resource": {"type": "Link", "properties": {"title": "x", "url": "https://x.example"}}}),
        )
        .await;
    assert_eq!(code(&link), 4100);
    let found = ok(alice_app
        .call("resources.query", json!({"query": {"type": todo_type}}))
        .await);
    assert_eq!(found["resources"].as_array().unwrap().len(), 1, "{found}");
    // Built-in resources read as absent, built-in types are refused.
    let chat_id = pair.chat.clone();
    assert_eq!(
        ok(alice_app
            .call("resources.get", json!({"id": chat_id}))
            .await),
        Value::Null
    );
    let update = alice_app
        .call(
            "resources.update",
            json!({"id": chat_id, "patch": {"properties": {"title": "mine"}}}),
        )
        .await;
    assert_eq!(code(&update), -32011);
    let builtin = alice_app
        .call("resources.query", json!({"query": {"type": "Resource"}}))
        .await;
    assert_eq!(code(&builtin), 4100);

    // Alice's app shares it with bob; bob (the user) accepts; bob's app sees it arrive.
    let sub = ok(bob_app
        .call(
            "resources.subscribe",
            json!({"filter": {"type": {"name": todo_type}}}),
        )
        .await);
    assert!(sub["subscription"].is_u64(), "{sub}");
    ok(pair
        .bob
        .client
        .call("events.subscribe", json!({"topics": ["share.received"]}))
        .await);
    let share = ok(alice_app
        .call(
            "shares.create",
            json!({"resource": todo_id, "members": [pair.bob.id], "role": "write"}),
        )
        .await);
    let share_id = share["id"].as_str().unwrap().to_string();
    let offer = wait_event(&mut pair.bob.client, "share.received", |d| {
        d["share"] == share_id
    })
    .await;
    assert_eq!(offer["resource"], todo_id.as_str());
    pair.bob
        .call("shares.accept", json!({"share": share_id}))
        .await;
    wait_event(&mut bob_app, "resource.changed", |d| {
        d["id"] == todo_id.as_str()
    })
    .await;
    let theirs = ok(bob_app.call("resources.get", json!({"id": todo_id})).await);
    assert_eq!(theirs["properties"]["title"], "buy milk");
    let bob_shares = ok(bob_app.call("shares.list", json!({})).await);
    assert!(
        bob_shares
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == share_id.as_str()),
        "{bob_shares}"
    );

    // A message through the app, to a contact only.
    let sent = ok(alice_app
        .call(
            "messages.send",
            json!({"peer_id": pair.bob.id, "text": "I shared our list"}),
        )
        .await);
    assert_eq!(sent["chat"], pair.chat.as_str());
    let received = wait_event(&mut pair.bob.client, "message.received", |d| {
        d["body"] == "I shared our list"
    })
    .await;
    assert_eq!(received["via"], ORIGIN, "{received}");
    let to_stranger = alice_app
        .call(
            "messages.send",
            json!({"peer_id": pair.alice.id, "text": "hi"}),
        )
        .await;
    assert_eq!(code(&to_stranger), -32030);

    // Another origin, granted everything, sees none of it and cannot reach in; naming the
    // first origin in a call's params changes nothing (the session's origin is the one).
    let lying = ok(evil
        .call("permissions.get", json!({"origin": ORIGIN}))
        .await);
    assert_eq!(lying["origin"], EVIL);
    assert_ne!(lying["namespace"], namespace.as_str());
    assert_eq!(
        ok(evil.call("resources.get", json!({"id": todo_id})).await),
        Value::Null
    );
    let query = evil
        .call("resources.query", json!({"query": {"type": todo_type}}))
        .await;
    assert_eq!(code(&query), 4100);
    let sneaky = evil
        .call(
            "schemas.register",
            json!({"schema": todo_schema(&namespace, "Evil")}),
        )
        .await;
    assert_eq!(
        code(&sneaky),
        -32013,
        "registered into another app's namespace"
    );
    let messages = evil
        .call("resources.query", json!({"query": {"type": "Message"}}))
        .await;
    assert_eq!(code(&messages), 4100);
    assert_eq!(ok(evil.call("shares.list", json!({})).await), json!([]));
    let revoke_theirs = evil
        .call(
            "shares.revoke",
            json!({"share": share_id, "peer_id": pair.bob.id}),
        )
        .await;
    assert_eq!(code(&revoke_theirs), -32041);
    let subscribe_all = evil
        .call("resources.subscribe", json!({"filter": "all"}))
        .await;
    assert_eq!(code(&subscribe_all), 4100);

    // Revoke: the next call is refused and the subscription made before hears nothing.
    ok(alice_app
        .call("resources.subscribe", json!({"filter": {"id": todo_id}}))
        .await);
    ok(pair
        .alice
        .client
        .call("resources.subscribe", json!({"filter": {"id": todo_id}}))
        .await);
    ok(pair
        .alice
        .client
        .call("apps.revoke", json!({"origin": ORIGIN}))
        .await);
    assert_eq!(
        code(
            &alice_app
                .call("resources.get", json!({"id": todo_id}))
                .await
        ),
        4100
    );
    ok(bob_app
        .call(
            "resources.update",
            json!({"id": todo_id, "patch": {"properties": {"done": true}}}),
        )
        .await);
    // Alice's node takes bob's edit (her trusted session hears it) ...
    wait_event(&mut pair.alice.client, "resource.changed", |d| {
        d["id"] == todo_id.as_str()
    })
    .await;
    // ... and her revoked app does not.
    none_within(&mut alice_app, QUIET, "resource.changed", |_| true).await;

    // Granted again, the app manages its own share: it revokes bob.
    grant(&mut pair.alice.client, ORIGIN, &["shares"]).await;
    let narrowed = ok(alice_app
        .call(
            "shares.revoke",
            json!({"share": share_id, "peer_id": pair.bob.id}),
        )
        .await);
    let members = narrowed["members"].as_array().unwrap();
    assert!(
        !members.iter().any(|m| m["peer"] == pair.bob.id.as_str()),
        "{narrowed}"
    );
    assert_eq!(
        code(
            &alice_app
                .call("resources.get", json!({"id": todo_id}))
                .await
        ),
        4100,
        "only the scopes granted again"
    );
}

#[tokio::test]
async fn a_share_brings_its_apps_schema_to_a_node_that_never_saw_it() {
    let mut pair = Pair::start().await;
    let alice_daemon = pair.alice.daemon.as_ref().unwrap();
    let bob_daemon = pair.bob.daemon.as_ref().unwrap();
    let mut alice_app = app_session(alice_daemon, ORIGIN).await;
    let mut bob_app = app_session(bob_daemon, ORIGIN).await;
    grant(&mut pair.alice.client, ORIGIN, ALL_SCOPES).await;
    grant(&mut pair.bob.client, ORIGIN, ALL_SCOPES).await;
    let perms = ok(alice_app.call("permissions.get", json!({})).await);
    let namespace = perms["namespace"].as_str().unwrap().to_string();
    let todo_type = format!("{namespace}Todo");
    ok(alice_app
        .call(
            "schemas.register",
            json!({"schema": todo_schema(&namespace, "Todo")}),
        )
        .await);
    let todo = ok(alice_app
        .call(
            "resources.create",
            json!({"resource": {"type": todo_type, "properties": {"title": "buy milk", "done": false}}}),
        )
        .await);
    let todo_id = todo["id"].as_str().unwrap().to_string();

    // Bob's node has never seen the type: neither his app nor anyone registered it.
    let types = pair.bob.call("schemas.list", json!({})).await;
    assert!(!types.as_array().unwrap().contains(&json!(todo_type)));
    ok(pair
        .bob
        .client
        .call("events.subscribe", json!({"topics": ["share.received"]}))
        .await);
    ok(pair
        .bob
        .client
        .call("resources.subscribe", json!({"filter": "all"}))
        .await);
    ok(pair
        .alice
        .client
        .call("resources.subscribe", json!({"filter": {"id": todo_id}}))
        .await);
    let share = ok(alice_app
        .call(
            "shares.create",
            json!({"resource": todo_id, "members": [pair.bob.id], "role": "write"}),
        )
        .await);
    let share_id = share["id"].as_str().unwrap().to_string();
    wait_event(&mut pair.bob.client, "share.received", |d| {
        d["share"] == share_id
    })
    .await;
    pair.bob
        .call("shares.accept", json!({"share": share_id}))
        .await;
    wait_event(&mut pair.bob.client, "resource.changed", |d| {
        d["id"] == todo_id.as_str()
    })
    .await;

    // The type came with the share: bob's node stores the resource, and his app (same
    // origin, same namespace) reads, queries and edits it, checked against the carried schema.
    let types = pair.bob.call("schemas.list", json!({})).await;
    assert!(
        types.as_array().unwrap().contains(&json!(todo_type)),
        "{types}"
    );
    let theirs = ok(bob_app.call("resources.get", json!({"id": todo_id})).await);
    assert_eq!(theirs["properties"]["title"], "buy milk");
    assert_eq!(theirs["type"], todo_type.as_str());
    let found = ok(bob_app
        .call("resources.query", json!({"query": {"type": todo_type}}))
        .await);
    assert_eq!(found["resources"].as_array().unwrap().len(), 1, "{found}");
    let bad = bob_app
        .call(
            "resources.update",
            json!({"id": todo_id, "patch": {"properties": {"done": "yes"}}}),
        )
        .await;
    assert!(bad.error.is_some(), "a value breaking the carried schema");
    ok(bob_app
        .call(
            "resources.update",
            json!({"id": todo_id, "patch": {"properties": {"done": true}}}),
        )
        .await);
    wait_event(&mut pair.alice.client, "resource.changed", |d| {
        d["id"] == todo_id.as_str()
    })
    .await;
    let mine = ok(alice_app
        .call("resources.get", json!({"id": todo_id}))
        .await);
    assert_eq!(mine["properties"]["done"], true);

    // A new version of the app's schema travels with the next edit that needs it.
    let due = r#"
      <optional><element name="due"><data type="string"/></element></optional>"#;
    ok(alice_app
        .call(
            "schemas.register",
            json!({"schema": todo_schema_with(&namespace, "Todo", due)}),
        )
        .await);
    ok(alice_app
        .call(
            "resources.update",
            json!({"id": todo_id, "patch": {"properties": {"due": "friday"}}}),
        )
        .await);
    let mut seen = json!(null);
    for _ in 0..3 {
        wait_event(&mut pair.bob.client, "resource.changed", |d| {
            d["id"] == todo_id.as_str()
        })
        .await;
        seen = ok(bob_app.call("resources.get", json!({"id": todo_id})).await);
        if seen["properties"]["due"] == "friday" {
            break;
        }
    }
    assert_eq!(seen["properties"]["due"], "friday", "{seen}");
    assert_eq!(seen["properties"]["done"], true);
}
