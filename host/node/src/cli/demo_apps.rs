//! The demo's web-app part: a page on http://localhost:8080 talks to each node through an app session (the one the
//! extension opens for a page, bound to its origin). It gets nothing before the user allows it; then it reads who
//! alice is, registers its own type, makes a note and shares it with bob, whose copy of the same app sees it arrive.

use allpeers_model::api::ErrorCode;
use allpeers_model::api::methods as m;
use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::demo::{Node, step, wait_event};
use allpeers_node::client::{ApiClient, ClientError};

const ORIGIN: &str = "http://localhost:8080";
const SCOPES: &[&str] = &["identity", "contacts:read", "resources", "shares"];

/// A note type in the app's namespace (what the sample board app registers, reduced).
fn note_schema(namespace: &str) -> String {
    let name = format!("{namespace}Note");
    format!(
        r#"<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1"
         ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <include href="Resource.rng"><start><ref name="{name}"/></start></include>
  <define name="{name}"><element name="{name}"><ref name="{name}.content"/></element></define>
  <define name="{name}.content" ap:type="{name}" ap:extends="Resource" ap:title="Note">
    <interleave>
      <ref name="Resource.content"/>
      <optional><element name="text"><data type="string"/></element></optional>
    </interleave>
  </define>
</grammar>"#
    )
}

async fn app_of(node: &Node) -> anyhow::Result<ApiClient> {
    step("app session", async {
        Ok(ApiClient::connect_app(&node.paths.socket, "demo/app", ORIGIN).await?)
    })
    .await
}

pub(super) async fn run(alice: &Node, bob: &Node, bob_id: &Value) -> anyhow::Result<()> {
    println!(
        "\n[11/16] A web app ({ORIGIN}) builds on AllPeers: the user allows it, the daemon enforces what it may do"
    );
    let alice_app = app_of(alice).await?;
    match alice_app.call("identity.get", json!({})).await {
        Err(ClientError::Rpc(e)) if e.kind() == Some(ErrorCode::Unauthorized) => {
            println!(
                "      before the grant the page gets {}: {}",
                e.code, e.message
            )
        }
        other => bail!("an app without a grant was answered {other:?}"),
    }
    for node in [alice, bob] {
        node.api
            .call("apps.grant", json!({"origin": ORIGIN, "scopes": SCOPES}))
            .await?;
    }
    println!(
        "      alice and bob allow it (in the extension's prompt): {}",
        SCOPES.join(", ")
    );
    let me = alice_app.call("identity.get", json!({})).await?;
    let contacts = alice_app.call("contacts.list", json!({})).await?;
    println!(
        "      the page reads who alice is ({}) and her contacts ({}): PeerIds and names, nothing more",
        me["name"].as_str().unwrap_or("?"),
        contacts
            .as_array()
            .map(|c| c
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    let namespace = alice_app.call("permissions.get", json!({})).await?["namespace"]
        .as_str()
        .context("permissions.get names the app's namespace")?
        .to_string();
    let bob_app = app_of(bob).await?;
    for app in [&alice_app, &bob_app] {
        app.call(
            "schemas.register",
            json!({"schema": note_schema(&namespace)}),
        )
        .await?;
    }
    let note_type = format!("{namespace}Note");
    println!(
        "      its own type {note_type} (namespaced by origin: no app can touch another's types)"
    );
    match alice_app
        .call("resources.query", json!({"query": {"type": "Link"}}))
        .await
    {
        Err(ClientError::Rpc(e)) => {
            println!("      reading alice's Links instead: refused ({})", e.code)
        }
        Ok(_) => bail!("an app read a built-in type"),
        Err(e) => return Err(e.into()),
    }
    let note = alice_app
        .call(
            "resources.create",
            json!({"resource": {"type": note_type, "properties": {"title": "Saturday", "text": "picnic at noon"}}}),
        )
        .await?;
    let note_id = note["id"].as_str().context("a resource id")?.to_string();
    bob_app
        .call(
            "resources.subscribe",
            json!({"filter": {"type": {"name": note_type}}}),
        )
        .await?;
    bob.api
        .call(m::EVENTS_SUBSCRIBE, json!({"topics": ["share.received"]}))
        .await?;
    let share = alice_app
        .call(
            "shares.create",
            json!({"resource": note_id, "members": [bob_id], "role": "write"}),
        )
        .await?;
    let share_id = share["id"].as_str().context("a share id")?.to_string();
    wait_event(&bob.api, "share.received", |d| {
        d["share"] == share_id.as_str()
    })
    .await?;
    bob.api
        .call("shares.accept", json!({"share": share_id}))
        .await?;
    wait_event(&bob_app, "resource.changed", |d: &Value| {
        d["id"] == note_id.as_str()
    })
    .await?;
    let theirs = bob_app
        .call("resources.get", json!({"id": note_id}))
        .await?;
    println!(
        "      alice's page shares a note with bob; bob accepts; his page shows \"{}: {}\" (no server of the app's own)",
        theirs["properties"]["title"].as_str().unwrap_or("?"),
        theirs["properties"]["text"].as_str().unwrap_or("?")
    );
    alice
        .api
        .call("apps.revoke", json!({"origin": ORIGIN}))
        .await?;
    match alice_app.call("identity.get", json!({})).await {
        Err(ClientError::Rpc(e)) if e.kind() == Some(ErrorCode::Unauthorized) => {
            println!(
                "      alice revokes the site in Settings: its next call gets {} at once",
                e.code
            )
        }
        other => bail!("a revoked app was answered {other:?}"),
    }
    Ok(())
}
