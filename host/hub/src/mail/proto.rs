//! `allpeers/hub-mail/1`: what a node asks its hub's e-mail gateway.
//!
//! Request/response (postcard) on the peer's ordinary connection to its hub; the asker is the
//! TLS-authenticated PeerId of that connection. A node sends data fields only, never HTML,
//! headers or free text beyond the bounded fields below; the hub renders fixed templates.
//!
//! Node side (for the `mail.*` API; `endpoint` is the node's `allpeers_net::Endpoint`):
//! ```ignore
//! use allpeers_hub::mail::proto::*;
//! let r: MailResponse = endpoint.request(hub, &mail_ns(), &MailRequest::SetAddress {
//!     address: "alice@example.org".into() }).await?;          // -> AddressSet { masked, .. }
//! endpoint.request(hub, &mail_ns(), &MailRequest::Confirm { code: "K7Q2M9XD".into() }).await?;
//! endpoint.request(hub, &mail_ns(), &MailRequest::SetPreferences(Preferences::ALL)).await?;
//! endpoint.request(hub, &mail_ns(), &MailRequest::Notify { to: bob,
//!     notice: Notice::Shared { title: "Holiday 2026".into() } }).await?; // -> Notified(..)
//! endpoint.request(hub, &mail_ns(), &MailRequest::Invite { address: "dave@example.test".into(),
//!     invite_code: code }).await?;                            // -> Invited
//! ```
//! Refusals are `RemoteError`s: framework `BadRequest` (undecodable), `Unsupported` (no
//! gateway on this hub), or `Application(code)` with the codes in [`code`].

use allpeers_model::PeerId;
use serde::{Deserialize, Serialize};

/// The namespace string (also [`mail_ns`]).
pub const MAIL_NAMESPACE: &str = "allpeers/hub-mail/1";

/// Largest request or answer: every field below is bounded far under it.
pub const MAIL_LIMIT: usize = 4096;
/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets, so an address at most 254.
pub const MAX_ADDRESS: usize = 254;
/// A display name in a subject line: long enough for any real name, short enough for a
/// subject that fits a phone's notification.
pub const MAX_NAME: usize = 64;
/// A share title in a subject line and body.
pub const MAX_TITLE: usize = 200;
/// `allpeers_node::social::invite` codes parse up to 2048 characters.
pub const MAX_INVITE_CODE: usize = 2048;
/// A confirmation code as typed by a person (ours are 8 characters).
pub const MAX_CODE: usize = 32;
/// "N messages are waiting": more than this is shown as this.
pub const MAX_WAITING_COUNT: u32 = 9999;

pub fn mail_ns() -> allpeers_net::Namespace {
    allpeers_net::Namespace::allpeers("hub-mail", 1).expect("valid namespace")
}

/// Application error codes of the namespace (30..39; the registry uses 1..10, the
/// connectivity namespace 20).
pub mod code {
    /// Not an e-mail address (or too long).
    pub const BAD_ADDRESS: u32 = 30;
    /// The asker has no address registered (or not confirmed yet, for what needs one).
    pub const NO_ADDRESS: u32 = 31;
    /// Wrong or expired confirmation code, or too many attempts.
    pub const BAD_CODE: u32 = 32;
    /// Over a rate limit or the daily cap: try later.
    pub const RATE_LIMITED: u32 = 33;
    /// A data field is too long, empty, or not of its form.
    pub const BAD_FIELD: u32 = 34;
    /// The address asked for no more mail from this hub, bounced, or was invited lately.
    pub const DECLINED: u32 = 35;
}

/// Which kinds of mail a peer accepts (each is off until the peer turns it on, except as
/// [`Preferences::DEFAULT`] says at registration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    /// "Alice shared 'Holiday 2026' with you".
    pub share: bool,
    /// Invitations to this address (from peers who only know the address).
    pub invitation: bool,
    /// "3 messages are waiting for you" while offline.
    pub waiting: bool,
    /// A periodic digest (accepted and stored; no digest is sent yet).
    pub digest: bool,
}

impl Preferences {
    pub const ALL: Preferences = Preferences {
        share: true,
        invitation: true,
        waiting: true,
        digest: true,
    };
    pub const NONE: Preferences = Preferences {
        share: false,
        invitation: false,
        waiting: false,
        digest: false,
    };
    /// What a fresh registration accepts: the notices about the peer's own traffic.
    pub const DEFAULT: Preferences = Preferences {
        share: true,
        invitation: true,
        waiting: true,
        digest: false,
    };

    pub fn bits(self) -> u8 {
        u8::from(self.share)
            | (u8::from(self.invitation) << 1)
            | (u8::from(self.waiting) << 2)
            | (u8::from(self.digest) << 3)
    }

    pub fn from_bits(bits: u8) -> Preferences {
        Preferences {
            share: bits & 1 != 0,
            invitation: bits & 2 != 0,
            waiting: bits & 4 != 0,
            digest: bits & 8 != 0,
        }
    }
}

/// A request to the gateway; the asker is the connection's authenticated peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailRequest {
    /// Registers (or replaces) the asker's address. The hub mails a code and a link to it
    /// (double opt-in); nothing else is sent there until it is confirmed. The same address
    /// again within a minute keeps the code already mailed (answer `AddressSet`); the same
    /// address already confirmed answers `Confirmed`.
    SetAddress { address: String },
    /// Confirms the asker's address with the code from that mail.
    Confirm { code: String },
    /// Sets which kinds of mail the asker accepts.
    SetPreferences(Preferences),
    /// The asker's registration: masked address, confirmed, preferences.
    Status,
    /// Stops all mail to the asker's address (it goes on the suppression list) and forgets
    /// the registration.
    UnsubscribeAll,
    /// Mails `to` (a peer of this hub with a confirmed address accepting the kind) a notice
    /// from the asker. The asker never learns the address, nor whether there is one.
    Notify { to: PeerId, notice: Notice },
    /// Invites an address to AllPeers: the mail carries the asker's invite code and this
    /// hub. The asker must be registered here (its name is the "who" of the mail).
    Invite {
        address: String,
        invite_code: String,
    },
}

/// What a notice says; the sender is always the asker's registered `name@hub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// "alice@hub shared 'title' with you".
    Shared { title: String },
    /// "`count` messages from alice@hub are waiting for you".
    Waiting { count: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailResponse {
    /// The confirmation mail is queued; the code works for `expires_in_secs`.
    AddressSet {
        masked: String,
        expires_in_secs: u64,
    },
    Confirmed,
    Preferences(Preferences),
    Status(Option<MailStatus>),
    Unsubscribed,
    Notified(NotifyOutcome),
    /// The invitation is queued.
    Invited,
}

/// The asker's own registration (the address masked: `a***@example.org`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailStatus {
    pub masked: String,
    pub confirmed: bool,
    pub preferences: Preferences,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotifyOutcome {
    /// A mail is queued.
    Queued,
    /// Not sent: the peer has no confirmed address, does not accept this kind, or asked
    /// for no mail (one answer for all, so the sender learns nothing about the address).
    NotSent,
}

/// Why a request is malformed (before any state is looked at).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("request over {MAIL_LIMIT} bytes")]
    TooLarge,
    #[error("undecodable request: {0}")]
    Decode(String),
    #[error("{field}: {why}")]
    Field { field: &'static str, why: String },
    #[error("not an e-mail address: {0}")]
    Address(String),
}

impl ProtoError {
    fn field(field: &'static str, why: impl Into<String>) -> ProtoError {
        ProtoError::Field {
            field,
            why: why.into(),
        }
    }
}

/// Decodes and checks a request: size, postcard framing, then every field's bound and form
/// (text fields come back cleaned, see [`clean_text`]). Never panics.
pub fn decode_request(bytes: &[u8]) -> Result<MailRequest, ProtoError> {
    if bytes.len() > MAIL_LIMIT {
        return Err(ProtoError::TooLarge);
    }
    let (request, rest): (MailRequest, _) =
        postcard::take_from_bytes(bytes).map_err(|e| ProtoError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ProtoError::Decode(format!("{} trailing bytes", rest.len())));
    }
    check_request(request)
}

/// Checks and cleans the fields of a decoded request.
pub fn check_request(request: MailRequest) -> Result<MailRequest, ProtoError> {
    Ok(match request {
        MailRequest::SetAddress { address } => MailRequest::SetAddress {
            address: fold_address(&address)?,
        },
        MailRequest::Confirm { code } => {
            let code = code.trim().to_ascii_uppercase();
            if code.is_empty() || code.len() > MAX_CODE {
                return Err(ProtoError::field("code", "empty or too long"));
            }
            MailRequest::Confirm { code }
        }
        MailRequest::Notify { to, notice } => MailRequest::Notify {
            to,
            notice: match notice {
                Notice::Shared { title } => Notice::Shared {
                    title: clean_text("title", &title, MAX_TITLE)?,
                },
                Notice::Waiting { count } => {
                    if count == 0 {
                        return Err(ProtoError::field("count", "no message waiting"));
                    }
                    Notice::Waiting {
                        count: count.min(MAX_WAITING_COUNT),
                    }
                }
            },
        },
        MailRequest::Invite {
            address,
            invite_code,
        } => MailRequest::Invite {
            address: fold_address(&address)?,
            invite_code: check_invite_code(&invite_code)?,
        },
        other @ (MailRequest::SetPreferences(_)
        | MailRequest::Status
        | MailRequest::UnsubscribeAll) => other,
    })
}

/// A text field for a subject or body: control characters (CR, LF, tabs, bidi overrides
/// stay visible as such nowhere) become spaces, runs of spaces one, trimmed; then it must be
/// non-empty and at most `max` characters.
pub fn clean_text(field: &'static str, text: &str, max: usize) -> Result<String, ProtoError> {
    if text.len() > max * 4 {
        return Err(ProtoError::field(field, format!("over {max} characters")));
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_control() || is_format_control(c) {
            ' '
        } else {
            c
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_end().to_string();
    if out.is_empty() {
        return Err(ProtoError::field(field, "empty"));
    }
    if out.chars().count() > max {
        return Err(ProtoError::field(field, format!("over {max} characters")));
    }
    Ok(out)
}

/// Bidirectional overrides and zero-width characters: they can make a subject read as
/// something else than what it says.
fn is_format_control(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// An address as the hub stores and compares it: a bare `local@domain` (no display name,
/// no comments, ASCII only: no look-alike domains), folded to lowercase (nearly every
/// provider ignores case, and a suppression must match however it is typed).
pub fn fold_address(text: &str) -> Result<String, ProtoError> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_ADDRESS {
        return Err(ProtoError::Address("empty or over 254 characters".into()));
    }
    if !text.bytes().all(|b| {
        b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'(' | b')' | b',' | b';' | b'"' | b'\\')
    }) {
        return Err(ProtoError::Address(
            "only a bare local@domain in ASCII".into(),
        ));
    }
    let folded = text.to_ascii_lowercase();
    let parsed: lettre::Address = folded
        .parse()
        .map_err(|e: lettre::address::AddressError| ProtoError::Address(e.to_string()))?;
    let domain = parsed.domain();
    if !domain.contains('.') || domain.starts_with('[') {
        return Err(ProtoError::Address(
            "the domain must be a DNS name with a dot".into(),
        ));
    }
    Ok(folded)
}

/// Invite codes are `apinvite1` + lowercase base32 (`allpeers_node::social::invite`):
/// anything else is refused, so a code can carry no markup or header.
pub fn check_invite_code(code: &str) -> Result<String, ProtoError> {
    let code = code.trim();
    if code.len() > MAX_INVITE_CODE {
        return Err(ProtoError::field("invite_code", "too long"));
    }
    let Some(body) = code.strip_prefix("apinvite1") else {
        return Err(ProtoError::field("invite_code", "not an apinvite1 code"));
    };
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    {
        return Err(ProtoError::field("invite_code", "not base32"));
    }
    Ok(code.to_string())
}

/// `alice@example.org` -> `a***@example.org` (what the owner is shown back).
pub fn mask_address(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(r: &MailRequest) -> Vec<u8> {
        postcard::to_allocvec(r).unwrap()
    }

    #[test]
    fn round_trip_and_cleaning() {
        let r = MailRequest::Notify {
            to: allpeers_model::PeerId::from_public_key([7; 32]),
            notice: Notice::Shared {
                title: " Holiday\r\nBcc: x@y.z\t2026 ".into(),
            },
        };
        let MailRequest::Notify {
            notice: Notice::Shared { title },
            ..
        } = decode_request(&encode(&r)).unwrap()
        else {
            panic!()
        };
        assert_eq!(title, "Holiday Bcc: x@y.z 2026");
        assert!(!title.contains('\r') && !title.contains('\n'));
    }

    #[test]
    fn bounds() {
        let long = "x".repeat(MAX_TITLE + 1);
        let r = MailRequest::Notify {
            to: allpeers_model::PeerId::from_public_key([7; 32]),
            notice: Notice::Shared { title: long },
        };
        assert!(matches!(
            decode_request(&encode(&r)),
            Err(ProtoError::Field { field: "title", .. })
        ));
        assert_eq!(
            decode_request(&vec![0; MAIL_LIMIT + 1]),
            Err(ProtoError::TooLarge)
        );
        assert!(matches!(
            decode_request(&[0xff, 0xff]),
            Err(ProtoError::Decode(_))
        ));
        let mut trailing = encode(&MailRequest::Status);
        trailing.push(0);
        assert!(matches!(
            decode_request(&trailing),
            Err(ProtoError::Decode(_))
        ));
        assert!(clean_text("name", "\u{202e}\r\n", 10).is_err());
        assert_eq!(
            decode_request(&encode(&MailRequest::Notify {
                to: allpeers_model::PeerId::from_public_key([7; 32]),
                notice: Notice::Waiting { count: 1_000_000 }
            })),
            Ok(MailRequest::Notify {
                to: allpeers_model::PeerId::from_public_key([7; 32]),
                notice: Notice::Waiting {
                    count: MAX_WAITING_COUNT
                }
            })
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(
            fold_address(" Alice@Example.ORG ").unwrap(),
            "alice@example.org"
        );
        for bad in [
            "alice",
            "alice@localhost",
            "Alice <alice@example.org>",
            "alice@example.org\r\nBcc: eve@example.org",
            "a,b@example.org",
            "alice@exämple.org",
            "alice@[127.0.0.1]",
            &format!("{}@example.org", "a".repeat(250)),
        ] {
            assert!(fold_address(bad).is_err(), "{bad:?}");
        }
        assert_eq!(mask_address("alice@example.org"), "a***@example.org");
    }

    #[test]
    fn invite_codes() {
        assert!(check_invite_code("apinvite1abcdefg234567").is_ok());
        for bad in [
            "",
            "apinvite1",
            "apinvite1ABC",
            "apinvite1a<b>",
            "hello",
            "apinvite1a\r\nb",
        ] {
            assert!(check_invite_code(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn preference_bits() {
        for bits in 0..16u8 {
            assert_eq!(Preferences::from_bits(bits).bits(), bits);
        }
    }
}
