//! What peers say to each other about contacts, presence and chat: the bodies of letters
//! (`allpeers_net::mail::Letter`) for the services [`CONTACTS`] and [`CHAT`]. Postcard on
//! the wire; every field bounded ([`Payload::check`]) before anything is stored.

use allpeers_model::PeerId;
use serde::{Deserialize, Serialize};

/// The letter service for contact requests, answers and presence.
pub const CONTACTS: &str = "allpeers/contacts/1";
/// The letter service for conversations.
pub const CHAT: &str = "allpeers/chat/1";

/// Longest message body (bytes).
pub const MAX_BODY: usize = 16 * 1024;
/// Longest request message, status text, title, name.
pub const MAX_SHORT: usize = 512;
/// Longest URL or description.
pub const MAX_URL: usize = 4096;
/// Largest link preview image.
pub const MAX_PREVIEW: usize = 16 * 1024;
/// Most members of a group.
pub const MAX_MEMBERS: usize = 64;
/// Most message ids in one receipt.
pub const MAX_RECEIPT_IDS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContactPayload {
    /// "Add me as a contact." `invite`: a token from one of the recipient's invite codes,
    /// which accepts the request at once.
    Request {
        message: String,
        invite: Option<Vec<u8>>,
    },
    /// "I accept your request."
    Accept,
    /// "I removed you."
    Remove,
    /// My availability and status text, told directly to a connected contact.
    Presence {
        availability: allpeers_hub_client::Availability,
        text: String,
    },
    /// "My home hub is this one": where my mailbox, presence and signals are, so letters for
    /// me are deposited there. `certificate`: my `name@hub` there, if registered (checked
    /// against the hub's key before the name is shown).
    Home {
        hub: PeerId,
        addresses: Vec<String>,
        certificate: Option<allpeers_hub_client::NameCertificate>,
    },
}

/// Which conversation a message belongs to, carried with every message so a member who
/// missed the group's creation still files it right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRef {
    pub id: String,
    pub group: bool,
    pub title: Option<String>,
    pub creator: PeerId,
    pub members: Vec<PeerId>,
}

/// A shared page, shown as a card in the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCard {
    pub url: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// A small preview image (PNG/JPEG bytes).
    pub preview: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Messages are the common case; boxing them would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum ChatPayload {
    Message {
        chat: ChatRef,
        id: String,
        /// Hybrid logical clock timestamp (text form): the conversation's order.
        hlc: String,
        sent_ms: u64,
        body: String,
        link: Option<LinkCard>,
        /// The web app (its origin) that sent it on the sender's behalf.
        via: Option<String>,
    },
    Edit {
        chat: String,
        id: String,
        edited_ms: u64,
        body: String,
    },
    Delete {
        chat: String,
        id: String,
    },
    /// The messages reached the sender of this receipt (`read`: and were read).
    Receipt {
        chat: String,
        ids: Vec<String>,
        read: bool,
    },
    Typing {
        chat: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

fn short(what: &str, s: &str, max: usize) -> Result<(), PayloadError> {
    if s.len() > max {
        return Err(PayloadError(format!(
            "{what} is {} bytes (at most {max})",
            s.len()
        )));
    }
    Ok(())
}

fn id_ok(what: &str, id: &str) -> Result<(), PayloadError> {
    if !allpeers_model::resource::is_valid_id(id) {
        return Err(PayloadError(format!("{what} {id:?} is not a valid id")));
    }
    Ok(())
}

impl ContactPayload {
    pub fn check(&self) -> Result<(), PayloadError> {
        match self {
            ContactPayload::Request { message, invite } => {
                short("request message", message, MAX_SHORT)?;
                if invite.as_ref().is_some_and(|t| t.len() > 64) {
                    return Err(PayloadError("invite token too long".into()));
                }
                Ok(())
            }
            ContactPayload::Presence { text, .. } => short("status text", text, MAX_SHORT),
            ContactPayload::Home {
                addresses,
                certificate,
                ..
            } => {
                if addresses.len() > allpeers_hub_client::proto::MAX_ADDRESSES {
                    return Err(PayloadError("too many hub addresses".into()));
                }
                for a in addresses {
                    short("hub address", a, MAX_SHORT)?;
                }
                if let Some(c) = certificate {
                    short("name", &c.name, MAX_SHORT)?;
                    short("hub name", &c.hub_name, MAX_SHORT)?;
                    if c.signature.len() > 64 {
                        return Err(PayloadError("certificate signature too long".into()));
                    }
                }
                Ok(())
            }
            ContactPayload::Accept | ContactPayload::Remove => Ok(()),
        }
    }
}

impl LinkCard {
    pub fn check(&self) -> Result<(), PayloadError> {
        short("link url", &self.url, MAX_URL)?;
        let lower = self.url.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err(PayloadError(
                "a shared link must be an http:// or https:// URL".into(),
            ));
        }
        short("link title", self.title.as_deref().unwrap_or(""), MAX_SHORT)?;
        short(
            "link description",
            self.description.as_deref().unwrap_or(""),
            MAX_URL,
        )?;
        if self.preview.as_ref().is_some_and(|p| p.len() > MAX_PREVIEW) {
            return Err(PayloadError(format!(
                "link preview larger than {MAX_PREVIEW} bytes"
            )));
        }
        Ok(())
    }
}

impl ChatPayload {
    /// The conversation this payload is about.
    pub fn chat_id(&self) -> &str {
        match self {
            ChatPayload::Message { chat, .. } => &chat.id,
            ChatPayload::Edit { chat, .. }
            | ChatPayload::Delete { chat, .. }
            | ChatPayload::Receipt { chat, .. }
            | ChatPayload::Typing { chat } => chat,
        }
    }

    pub fn check(&self) -> Result<(), PayloadError> {
        id_ok("chat", self.chat_id())?;
        match self {
            ChatPayload::Message {
                chat,
                id,
                hlc,
                body,
                link,
                via,
                ..
            } => {
                id_ok("message", id)?;
                short("via", via.as_deref().unwrap_or(""), MAX_SHORT)?;
                allpeers_model::hlc::Timestamp::parse(hlc)
                    .map_err(|e| PayloadError(e.to_string()))?;
                short("message", body, MAX_BODY)?;
                short("chat title", chat.title.as_deref().unwrap_or(""), MAX_SHORT)?;
                if chat.members.len() > MAX_MEMBERS {
                    return Err(PayloadError(format!(
                        "a group has at most {MAX_MEMBERS} members"
                    )));
                }
                if let Some(link) = link {
                    link.check()?;
                }
                Ok(())
            }
            ChatPayload::Edit { id, body, .. } => {
                id_ok("message", id)?;
                short("message", body, MAX_BODY)
            }
            ChatPayload::Delete { id, .. } => id_ok("message", id),
            ChatPayload::Receipt { ids, .. } => {
                if ids.len() > MAX_RECEIPT_IDS {
                    return Err(PayloadError("too many ids in one receipt".into()));
                }
                ids.iter().try_for_each(|id| id_ok("message", id))
            }
            ChatPayload::Typing { .. } => Ok(()),
        }
    }
}

pub fn encode<T: Serialize>(payload: &T) -> Vec<u8> {
    postcard::to_allocvec(payload).expect("payloads serialise")
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    postcard::from_bytes(bytes).map_err(|e| PayloadError(format!("malformed payload: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_ref() -> ChatRef {
        ChatRef {
            id: "dm-1".into(),
            group: false,
            title: None,
            creator: allpeers_net::Identity::generate().peer_id(),
            members: vec![],
        }
    }

    #[test]
    fn bounds_are_checked() {
        let message = |body: String, link: Option<LinkCard>| ChatPayload::Message {
            chat: chat_ref(),
            id: "m1".into(),
            hlc: "000000000000001000-00000000-a".into(),
            sent_ms: 0,
            body,
            link,
            via: None,
        };
        assert!(message("hi".into(), None).check().is_ok());
        assert!(message("x".repeat(MAX_BODY + 1), None).check().is_err());
        let link = |url: &str| LinkCard {
            url: url.into(),
            title: None,
            description: None,
            preview: None,
        };
        assert!(
            message("".into(), Some(link("https://example.org/")))
                .check()
                .is_ok()
        );
        assert!(
            message("".into(), Some(link("javascript:alert(1)")))
                .check()
                .is_err()
        );
        let bad_id = ChatPayload::Delete {
            chat: "dm-1".into(),
            id: "no spaces".into(),
        };
        assert!(bad_id.check().is_err());
        let bad_hlc = ChatPayload::Message {
            chat: chat_ref(),
            id: "m1".into(),
            hlc: "yesterday".into(),
            sent_ms: 0,
            body: String::new(),
            link: None,
            via: None,
        };
        assert!(bad_hlc.check().is_err());
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(decode::<ChatPayload>(&[0xff, 0xff, 0xff]).is_err());
        assert!(decode::<ContactPayload>(&[]).is_err());
    }
}
