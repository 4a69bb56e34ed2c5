//! What an area of the API is: a list of methods and the handler they go to. Areas name
//! this, the routing table names the areas.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use allpeers_model::api::RpcError;
use serde_json::Value;

use super::client::Session;
use super::state::Daemon;

/// One method call as an area's handler sees it.
pub struct Call<'a> {
    pub daemon: &'a Arc<Daemon>,
    pub session: &'a Session,
    pub method: &'a str,
    pub params: Value,
}

pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send + 'a>>;

/// An area of the API: the methods it serves and the handler they go to.
pub struct Area {
    pub name: &'static str,
    pub methods: &'static [&'static str],
    pub handle: for<'a> fn(Call<'a>) -> Reply<'a>,
    /// Methods that take long enough (CPU or waiting) to run beside the client's session
    /// rather than hold up its next requests.
    pub slow: &'static [&'static str],
}
