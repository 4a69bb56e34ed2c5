//! The local API's routing table: every method name to the area that serves it.
//!
//! An area is a folder of the node with a `METHODS` list and a handler (see [`Area`]);
//! [`AREAS`] lists them, one line each, and the table is built from it once. `hello`
//! answers with the table's method names, so a client always sees what this build serves.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use allpeers_model::api::methods::{self as m, topics};
use allpeers_model::api::{API_VERSION, ErrorCode, Request, Response, RpcError};
use serde_json::Value;

use super::area::{Area, Call};
use super::client::Session;
use super::rpc::{parse, to_value};
use super::state::Daemon;

/// Every area, one line each. A new area is a folder with its `AREA`, added here.
pub const AREAS: &[&Area] = &[
    &crate::core::AREA,
    &crate::net::AREA,
    &crate::hub::AREA,
    &crate::social::AREA,
    &crate::resources::AREA,
    &crate::mail::AREA,
    &crate::transfers::AREA,
    &crate::media::AREA,
    &crate::shares::AREA,
    &crate::files::AREA,
];

static TABLE: LazyLock<HashMap<&'static str, &'static Area>> = LazyLock::new(|| {
    let mut table = HashMap::new();
    for area in AREAS {
        for method in area.methods {
            let before = table.insert(*method, *area);
            assert!(before.is_none(), "{method} is served by two areas");
        }
    }
    table
});

/// Every method this build serves (for `hello`), sorted.
pub fn methods() -> Vec<String> {
    let mut all: Vec<String> = TABLE.keys().map(|m| m.to_string()).collect();
    all.push(m::HELLO.into());
    all.sort();
    all
}

pub fn is_slow(method: &str) -> bool {
    TABLE.get(method).is_some_and(|a| a.slow.contains(&method))
}

pub async fn handle(daemon: &Arc<Daemon>, session: &Session, request: Request) -> Response {
    let id = request.id.clone();
    let result = if request.method == m::HELLO {
        hello(daemon, session, request.params)
    } else if !session.has_said_hello() {
        Err(RpcError::new(
            ErrorCode::HelloRequired,
            format!("call \"hello\" before \"{}\"", request.method),
        ))
    } else {
        match TABLE.get(request.method.as_str()) {
            Some(area) => {
                (area.handle)(Call {
                    daemon,
                    session,
                    method: &request.method,
                    params: request.params,
                })
                .await
            }
            None => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("unknown method \"{}\"", request.method),
            )),
        }
    };
    match result {
        Ok(value) => Response::ok(id, value),
        Err(error) => Response::err(id, error),
    }
}

fn hello(daemon: &Daemon, session: &Session, params: Value) -> Result<Value, RpcError> {
    let params: m::HelloParams = parse(params)?;
    if params.api_version != API_VERSION {
        return Err(RpcError::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "API version {} is not supported; this daemon speaks version {API_VERSION}",
                params.api_version
            ),
        ));
    }
    let client: String = params
        .client
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    allpeers_log::flesh!(client = %client, "client said hello");
    session.said_hello(client);
    Ok(to_value(m::HelloResult {
        server: "allpeers".into(),
        server_version: env!("CARGO_PKG_VERSION").into(),
        api_version: API_VERSION,
        methods: methods(),
        topics: topics::ALL.iter().map(|s| s.to_string()).collect(),
        peer_id: daemon.peer_id(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_contract_is_routed_once_and_nothing_else() {
        let mut contract: Vec<String> = allpeers_model::api::contract::METHOD_NAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
        contract.sort();
        assert_eq!(methods(), contract);
    }

    #[test]
    fn slow_methods_belong_to_their_area() {
        for area in AREAS {
            for slow in area.slow {
                assert!(area.methods.contains(slow), "{slow} in {}", area.name);
            }
        }
    }
}
