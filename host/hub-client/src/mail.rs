//! `allpeers/hub-mail/1`: what a node asks its hub's e-mail gateway (the hub serves it in
//! `allpeers_hub::mail`; the node asks through [`crate::HubClient::mail`]).
//!
//! Request/response (postcard) on the peer's ordinary connection to its hub; the asker is the
//! TLS-authenticated PeerId of that connection. A node sends data fields only, never HTML,
//! headers or free text beyond the bounded fields below; the hub renders fixed templates.
//!
//! ```ignore
//! hub.mail(MailRequest::SetAddress { address: "alice@example.org".into() }).await?; // AddressSet
//! hub.mail(MailRequest::Confirm { code: "K7Q2M9XD".into() }).await?;                 // Confirmed
//! hub.mail(MailRequest::SetPreferences(Preferences::ALL)).await?;
//! hub.mail(MailRequest::Notify { to: bob,
//!     notice: Notice::Shared { title: "Holiday 2026".into() } }).await?;             // Notified(..)
//! hub.mail(MailRequest::Invite { address: "dave@example.test".into(),
//!     invite_code: code }).await?;                                                   // Invited
//! ```
//! Refusals are `HubError::Refused`: framework `BadRequest` (undecodable), `Unsupported` (no
//! gateway on this hub), or `Application(code)` with the codes in [`code`].
//!
//! The checks here need no mail library (the node never links one); the hub adds the full
//! address syntax check (`allpeers_hub::mail::proto::fold_address`).

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
/// An invitation's personal note: a line or two, like a status text.
pub const MAX_NOTE: usize = 280;
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
    /// "3 messages are waiting for you": the hub's digest of the letters waiting in the
    /// peer's mailbox there (`mail.digest_every_secs`, only when the count changed).
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
        /// A few words from the asker, shown as plain text in the mail.
        note: Option<String>,
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
    pub fn field(field: &'static str, why: impl Into<String>) -> ProtoError {
        ProtoError::Field {
            field,
            why: why.into(),
        }
    }
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

    #[test]
    fn cleaning() {
        assert_eq!(
            clean_text("title", " Holiday\r\nBcc: x@y.z\t2026 ", MAX_TITLE).unwrap(),
            "Holiday Bcc: x@y.z 2026"
        );
        assert!(clean_text("name", "\u{202e}\r\n", 10).is_err());
        assert!(clean_text("title", &"x".repeat(MAX_TITLE + 1), MAX_TITLE).is_err());
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
