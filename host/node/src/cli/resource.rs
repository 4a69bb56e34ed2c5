//! `allpeers resource …`, `allpeers query …`, `allpeers list …`, `allpeers schema …`: the
//! resource framework from the command line. Tables for people, `--json` for scripts.

use std::path::PathBuf;

use allpeers_model::resource::Resource;
use allpeers_model::resource::api as m;
use allpeers_model::schema::Registry;
use allpeers_node::paths::NodePaths;
use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::{connect, runtime};

#[derive(Subcommand)]
pub enum ResourceCommand {
    /// Create a resource: allpeers resource create '{"type":"Link","properties":{"url":"https://…"}}'
    Create { resource: String },
    /// Show one resource
    Get { id: String },
    /// Change properties: allpeers resource update ID '{"properties":{"title":"New"}}' (null removes)
    Update { id: String, patch: String },
    /// Delete a resource
    Delete { id: String },
}

#[derive(Subcommand)]
pub enum ListCommand {
    /// The items of a list, in order
    Items { list: String },
    /// Add a resource to a list (at the end, or at --index)
    Insert {
        list: String,
        item: String,
        #[arg(long)]
        index: Option<u64>,
    },
    /// Move an item to a position
    Move {
        list: String,
        item: String,
        index: u64,
    },
    /// Take an item out of a list
    Remove { list: String, item: String },
}

#[derive(Subcommand)]
pub enum SchemaCommand {
    /// Register (or evolve) a resource type from a RELAX NG file
    Register { file: PathBuf },
    /// The resource types the node knows
    List,
    /// A type's lineage, properties and children
    Describe {
        #[arg(value_name = "TYPE")]
        type_name: String,
    },
}

fn json_arg(text: &str, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("the {what} must be JSON"))
}

/// Runs one call and prints its result: a table of resources where there are resources
/// (unless `--json`), the JSON otherwise.
fn call_and_print(
    paths: &NodePaths,
    method: &str,
    params: Value,
    as_json: bool,
) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result = client.call(method, params).await?;
        if as_json {
            println!("{}", serde_json::to_string_pretty(&result)?);
            return Ok(());
        }
        let resources: Option<Vec<Resource>> = match &result {
            Value::Object(map) if map.contains_key("resources") => {
                serde_json::from_value(map["resources"].clone()).ok()
            }
            Value::Object(map) if map.contains_key("type") && map.contains_key("id") => {
                serde_json::from_value(result.clone()).ok().map(|r| vec![r])
            }
            _ => None,
        };
        match resources {
            Some(resources) => {
                print!("{}", Registry::builtin().table(&resources));
                if resources.is_empty() {
                    println!("(none)");
                }
            }
            None if result.is_null() => println!("done"),
            None => println!("{}", serde_json::to_string_pretty(&result)?),
        }
        Ok(())
    })
}

pub fn resource(paths: &NodePaths, command: ResourceCommand, as_json: bool) -> anyhow::Result<()> {
    let (method, params) = match command {
        ResourceCommand::Create { resource } => (
            m::RESOURCES_CREATE,
            json!({"resource": json_arg(&resource, "resource")?}),
        ),
        ResourceCommand::Get { id } => (m::RESOURCES_GET, json!({"id": id})),
        ResourceCommand::Update { id, patch } => (
            m::RESOURCES_UPDATE,
            json!({"id": id, "patch": json_arg(&patch, "patch")?}),
        ),
        ResourceCommand::Delete { id } => (m::RESOURCES_DELETE, json!({"id": id})),
    };
    call_and_print(paths, method, params, as_json)
}

pub fn query(paths: &NodePaths, query: &str, count: bool, as_json: bool) -> anyhow::Result<()> {
    let query = json_arg(query, "query")?;
    if count {
        return call_and_print(paths, m::RESOURCES_COUNT, json!({"query": query}), true);
    }
    call_and_print(paths, m::RESOURCES_QUERY, json!({"query": query}), as_json)
}

pub fn list(paths: &NodePaths, command: ListCommand, as_json: bool) -> anyhow::Result<()> {
    let (method, params) = match command {
        ListCommand::Items { list } => (m::LISTS_ITEMS, json!({"id": list})),
        ListCommand::Insert { list, item, index } => (
            m::LISTS_INSERT,
            json!({"list": list, "item": item, "index": index}),
        ),
        ListCommand::Move { list, item, index } => (
            m::LISTS_MOVE,
            json!({"list": list, "item": item, "index": index}),
        ),
        ListCommand::Remove { list, item } => {
            (m::LISTS_REMOVE, json!({"list": list, "item": item}))
        }
    };
    call_and_print(paths, method, params, as_json)
}

pub fn schema(paths: &NodePaths, command: SchemaCommand, as_json: bool) -> anyhow::Result<()> {
    let (method, params) = match command {
        SchemaCommand::Register { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("schema.rng")
                .to_string();
            (m::SCHEMAS_REGISTER, json!({"file": name, "text": text}))
        }
        SchemaCommand::List => (m::SCHEMAS_LIST, json!({})),
        SchemaCommand::Describe { type_name } => (m::SCHEMAS_DESCRIBE, json!({"type": type_name})),
    };
    call_and_print(paths, method, params, as_json)
}
