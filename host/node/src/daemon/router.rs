//! The local API's routing table: every method name to the area that serves it.
//!
//! An area is a folder of the node with a `METHODS` list and a handler (see [`Area`]);
//! [`AREAS`] lists them, one line each, and the table is built from it once. `hello`
//! answers with the table's method names, so a client always sees what this build serves.
//!
//! An app session (its `hello` named an origin) never reaches the table directly: every call
//! goes to the apps area ([`crate::apps::serve`]), which serves only the app-facing methods.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use allpeers_model::api::contract;
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
    &crate::apps::AREA,
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
    } else if let Some(origin) = session.origin() {
        crate::apps::serve(daemon, session, origin, &request.method, request.params).await
    } else {
        dispatch(daemon, session, &request.method, request.params).await
    };
    match result {
        Ok(value) => Response::ok(id, value),
        Err(error) => Response::err(id, error),
    }
}

/// Serves a method from the table (for a trusted session, or on an app's behalf once the
/// apps area has checked and shaped the call).
pub async fn dispatch(
    daemon: &Arc<Daemon>,
    session: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    match TABLE.get(method) {
        Some(area) => {
            (area.handle)(Call {
                daemon,
                session,
                method,
                params,
            })
            .await
        }
        None => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method \"{method}\""),
        )),
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
    // A session is bound to an origin at its first hello, for good: a later hello can
    // neither drop the origin nor change it, nor bind a trusted session that went on.
    let bound = match (params.origin.as_deref(), session.origin()) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("an app session keeps its origin"),
        (Some(_), None) if session.has_said_hello() => {
            Err("a trusted session cannot become an app session")
        }
        (Some(origin), _) => match crate::apps::rules::check_origin(origin) {
            Ok(origin) if session.bind_origin(origin) => Ok(Some(origin)),
            Ok(_) => Err("an app session keeps its origin"),
            Err(e) => {
                return Err(RpcError::new(ErrorCode::BadOrigin, e.to_string()));
            }
        },
    };
    let origin = bound.map_err(|why| RpcError::new(ErrorCode::BadOrigin, why))?;
    allpeers_log::flesh!(client = %client, origin = origin.unwrap_or("-"), "client said hello");
    session.said_hello(client);
    let (methods, topics) = match origin {
        Some(_) => (
            std::iter::once(m::HELLO)
                .chain(contract::APP_METHOD_NAMES.iter().copied())
                .map(str::to_string)
                .collect(),
            contract::APP_TOPIC_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        None => (
            methods(),
            topics::ALL.iter().map(|s| s.to_string()).collect(),
        ),
    };
    Ok(to_value(m::HelloResult {
        server: "allpeers".into(),
        server_version: env!("CARGO_PKG_VERSION").into(),
        api_version: API_VERSION,
        methods,
        topics,
        peer_id: origin.is_none().then(|| daemon.peer_id()),
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
