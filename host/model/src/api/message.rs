//! JSON-RPC 2.0 envelopes of the local API and the parsing of an incoming frame.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::error::ErrorCode;

/// The `error` member of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    pub code: i32,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RpcError {
            code: code.code(),
            message: message.into(),
            data: None,
        }
    }

    /// The same error with `data` (e.g. `{"attempts": [...]}` for `ConnectFailed`).
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

/// A request from a client. `id` is a number or a string chosen by the client and echoed
/// in the response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub jsonrpc: String,
    pub id: Value,
    pub method: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

impl Request {
    pub fn new(id: u64, method: impl Into<String>, params: Value) -> Self {
        Request {
            jsonrpc: "2.0".into(),
            id: Value::from(id),
            method: method.into(),
            params,
        }
    }
}

/// The one response to a request: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub jsonrpc: String,
    /// `null` when the request could not be read far enough to find its id.
    pub id: Value,
    /// `Some(Value::Null)` for a `"result": null` (a method answering null, e.g. a
    /// `resources.get` of nothing): present, unlike a missing `result`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

/// A field that is there, even as `null` (serde reads a `null` `Option` as `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Response {
    pub fn ok(id: Value, result: Value) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Value, error: RpcError) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// A pushed event: a JSON-RPC notification `{"method":"event","params":{"topic":..,"data":..}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub topic: String,
    pub data: Value,
}

impl Event {
    pub fn to_notification(&self) -> Value {
        serde_json::json!({"jsonrpc": "2.0", "method": "event", "params": self})
    }
}

/// What a client receives: a response, or a notification (an event or a chunk).
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Response(Response),
    Notification { method: String, params: Value },
}

impl Incoming {
    /// Reads a frame sent by the daemon.
    pub fn parse(frame: &[u8]) -> Result<Incoming, RpcError> {
        let value: Value = serde_json::from_slice(frame)
            .map_err(|e| RpcError::new(ErrorCode::ParseError, format!("invalid JSON: {e}")))?;
        if value.get("id").is_some() {
            let response = serde_json::from_value(value).map_err(|e| {
                RpcError::new(ErrorCode::InvalidRequest, format!("bad response: {e}"))
            })?;
            return Ok(Incoming::Response(response));
        }
        let method = value
            .get("method")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                RpcError::new(
                    ErrorCode::InvalidRequest,
                    "neither response nor notification",
                )
            })?
            .to_string();
        let params = value.get("params").cloned().unwrap_or(Value::Null);
        Ok(Incoming::Notification { method, params })
    }
}

/// Longest method name accepted; anything longer is certainly not one of ours.
const MAX_METHOD_LEN: usize = 128;

/// Reads a frame sent by a client. On failure, the error response to send back (with the
/// request's id when it could be found, else `null`).
pub fn parse_request(frame: &[u8]) -> Result<Request, Box<Response>> {
    let text = std::str::from_utf8(frame).map_err(|e| {
        Box::new(Response::err(
            Value::Null,
            RpcError::new(
                ErrorCode::ParseError,
                format!(
                    "frame is not valid UTF-8 (invalid byte at offset {})",
                    e.valid_up_to()
                ),
            ),
        ))
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Box::new(Response::err(
            Value::Null,
            RpcError::new(
                ErrorCode::ParseError,
                format!("frame is not valid JSON: {e}"),
            ),
        ))
    })?;
    let invalid = |id: Value, why: &str| {
        Box::new(Response::err(
            id,
            RpcError::new(ErrorCode::InvalidRequest, format!("invalid request: {why}")),
        ))
    };
    let Value::Object(object) = value else {
        return Err(invalid(Value::Null, "expected a JSON object"));
    };
    let id = match object.get("id") {
        Some(id @ (Value::Number(_) | Value::String(_))) => id.clone(),
        Some(_) => return Err(invalid(Value::Null, "\"id\" must be a number or a string")),
        None => {
            return Err(invalid(
                Value::Null,
                "missing \"id\" (every request gets a response)",
            ));
        }
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid(id, "\"jsonrpc\" must be \"2.0\""));
    }
    let method = match object.get("method") {
        Some(Value::String(m)) if !m.is_empty() && m.len() <= MAX_METHOD_LEN => m.clone(),
        Some(Value::String(_)) => return Err(invalid(id, "\"method\" is empty or too long")),
        _ => return Err(invalid(id, "missing string \"method\"")),
    };
    let params = object.get("params").cloned().unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Object(_) | Value::Array(_)) {
        return Err(invalid(id, "\"params\" must be an object or an array"));
    }
    Ok(Request {
        jsonrpc: "2.0".into(),
        id,
        method,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_of(frame: &[u8]) -> Response {
        *parse_request(frame).unwrap_err()
    }

    #[test]
    fn a_valid_request_parses() {
        let req = parse_request(br#"{"jsonrpc":"2.0","id":7,"method":"hello","params":{"a":1}}"#)
            .unwrap();
        assert_eq!(req.id, json!(7));
        assert_eq!(req.method, "hello");
        assert_eq!(req.params, json!({"a":1}));
    }

    #[test]
    fn bad_frames_name_the_problem() {
        let utf8 = err_of(b"{\"x\":\"\xff\"}");
        assert_eq!(
            utf8.error.as_ref().unwrap().kind(),
            Some(ErrorCode::ParseError)
        );
        assert!(utf8.error.unwrap().message.contains("UTF-8"));

        let json = err_of(b"{nope");
        assert!(json.error.unwrap().message.contains("not valid JSON"));

        let no_method = err_of(br#"{"jsonrpc":"2.0","id":"a"}"#);
        assert_eq!(no_method.id, json!("a"));
        assert_eq!(
            no_method.error.unwrap().kind(),
            Some(ErrorCode::InvalidRequest)
        );

        let no_id = err_of(br#"{"jsonrpc":"2.0","method":"x"}"#);
        assert!(no_id.error.unwrap().message.contains("id"));

        let bad_params = err_of(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#);
        assert!(bad_params.error.unwrap().message.contains("params"));
    }

    #[test]
    fn incoming_tells_responses_from_notifications() {
        let event = Event {
            topic: "t".into(),
            data: json!(1),
        }
        .to_notification();
        let parsed = Incoming::parse(event.to_string().as_bytes()).unwrap();
        assert!(matches!(parsed, Incoming::Notification { ref method, .. } if method == "event"));
        let resp = serde_json::to_vec(&Response::ok(json!(1), json!("r"))).unwrap();
        assert!(matches!(
            Incoming::parse(&resp).unwrap(),
            Incoming::Response(_)
        ));
    }

    #[test]
    fn a_null_result_is_a_result() {
        let null: Response = serde_json::from_slice(
            &serde_json::to_vec(&Response::ok(json!(1), Value::Null)).unwrap(),
        )
        .unwrap();
        assert_eq!(null.result, Some(Value::Null));
        let failed: Response = serde_json::from_value(
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "m"}}),
        )
        .unwrap();
        assert_eq!(failed.result, None);
    }
}
