//! The service framework's frames (see the module docs of [`crate::service`]).

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::{ErrorCode, Namespace, RemoteError, StreamKind};
use crate::error::NetError;

/// Largest head frame.
pub(crate) const HEAD_LIMIT: usize = 512;
/// Largest reply that carries only an error or an acknowledgement.
pub(crate) const ACK_LIMIT: usize = 4096;

const OK: u8 = 0;
const ERR: u8 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Head {
    pub namespace: Namespace,
    pub kind: StreamKind,
}

pub(crate) fn encode_head(namespace: &Namespace, kind: StreamKind) -> Result<Bytes, NetError> {
    super::encode(&Head {
        namespace: namespace.clone(),
        kind,
    })
}

/// A reply: `0` + body, or `1` + postcard [`RemoteError`].
pub(crate) fn encode_reply(reply: &Result<Bytes, RemoteError>) -> Bytes {
    let mut out = BytesMut::new();
    match reply {
        Ok(body) => {
            out.put_u8(OK);
            out.put_slice(body);
        }
        Err(e) => {
            out.put_u8(ERR);
            let mut e = e.clone();
            e.message.truncate(1024);
            out.put_slice(&postcard::to_allocvec(&e).unwrap_or_default());
        }
    }
    out.freeze()
}

pub(crate) fn decode_reply(frame: Bytes) -> Result<Result<Bytes, RemoteError>, NetError> {
    match frame.first() {
        Some(&OK) => Ok(Ok(frame.slice(1..))),
        Some(&ERR) => Ok(Err(super::decode(&frame[1..])?)),
        _ => Err(NetError::Decode("reply with an unknown status".into())),
    }
}

/// A datagram: `[namespace length: u8][namespace][body]`.
pub(crate) fn encode_datagram(namespace: &Namespace, body: &[u8]) -> Bytes {
    let ns = namespace.as_str().as_bytes();
    let mut out = BytesMut::with_capacity(1 + ns.len() + body.len());
    out.put_u8(ns.len() as u8);
    out.put_slice(ns);
    out.put_slice(body);
    out.freeze()
}

pub(crate) fn decode_datagram(data: &Bytes) -> Option<(Namespace, Bytes)> {
    let len = *data.first()? as usize;
    let ns = data.get(1..1 + len)?;
    let ns = Namespace::new(std::str::from_utf8(ns).ok()?).ok()?;
    Some((ns, data.slice(1 + len..)))
}

pub(crate) fn unknown_namespace(namespace: &str) -> RemoteError {
    RemoteError::new(
        ErrorCode::UnknownNamespace,
        format!("no service {namespace}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_datagrams_round_trip() {
        let ok = encode_reply(&Ok(Bytes::from_static(b"hi")));
        assert_eq!(decode_reply(ok).unwrap().unwrap(), &b"hi"[..]);
        let err = encode_reply(&Err(RemoteError::refused("no")));
        assert_eq!(
            decode_reply(err).unwrap().unwrap_err().code,
            ErrorCode::Refused
        );
        assert!(decode_reply(Bytes::from_static(&[9])).is_err());
        assert!(decode_reply(Bytes::new()).is_err());

        let ns = Namespace::new("allpeers/chat/1").unwrap();
        let d = encode_datagram(&ns, b"body");
        let (ns2, body) = decode_datagram(&d).unwrap();
        assert_eq!(ns2, ns);
        assert_eq!(body, &b"body"[..]);
        assert!(decode_datagram(&Bytes::from_static(&[200, b'a'])).is_none());
        assert!(decode_datagram(&Bytes::new()).is_none());
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(Namespace::new("allpeers/chat/1").is_ok());
        assert!(Namespace::new("example.org/my-app_2/10").is_ok());
        for bad in [
            "",
            "allpeers/chat",
            "allpeers/Chat/1",
            "allpeers/chat/v1",
            "a/b/1/2",
            "a//1",
        ] {
            assert!(Namespace::new(bad).is_err(), "{bad}");
        }
        assert!(Namespace::new(&format!("a/{}/1", "x".repeat(200))).is_err());
    }
}
