//! What every area's handlers share: typed params, JSON results, application errors.

use allpeers_model::api::{ErrorCode, RpcError};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The hub (`-32020…`) and social (`-32030…`) codes the handlers answer with, by the names
/// the handlers use; the numbers are the contract's one table, `allpeers_model::api::ErrorCode`.
pub mod codes {
    use allpeers_model::api::ErrorCode;

    pub const NAME_TAKEN: i32 = ErrorCode::NameTaken.code();
    pub const BAD_NAME: i32 = ErrorCode::BadName.code();
    pub const ANSWER_REJECTED: i32 = ErrorCode::AnswerRejected.code();
    pub const RELAY_REFUSED: i32 = ErrorCode::RelayRefused.code();
    pub const QUOTA: i32 = ErrorCode::Quota.code();
    pub const HUB_UNREACHABLE: i32 = ErrorCode::HubUnreachable.code();
    pub const PEER_OFFLINE: i32 = ErrorCode::PeerOffline.code();
    pub const NO_HUB: i32 = ErrorCode::NoHub.code();
    pub const CONNECT_FAILED: i32 = ErrorCode::ConnectFailed.code();
    pub const NOT_A_CONTACT: i32 = ErrorCode::NotAContact.code();
    pub const UNKNOWN_PEER: i32 = ErrorCode::UnknownPeer.code();
    pub const NOT_FOUND: i32 = ErrorCode::RequestOrChatNotFound.code();
    pub const TOO_LARGE: i32 = ErrorCode::TooLarge.code();
    pub const REFUSED: i32 = ErrorCode::RefusedByPeer.code();
}

/// Typed params, or `-32602` naming what is wrong.
pub fn parse<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() { json!({}) } else { params };
    serde_json::from_value(params)
        .map_err(|e| RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {e}")))
}

pub fn to_value<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("API results serialise")
}

/// An error with an application code.
pub fn app_error(code: i32, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
        data: None,
    }
}

pub fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError::new(ErrorCode::Internal, e.to_string())
}
