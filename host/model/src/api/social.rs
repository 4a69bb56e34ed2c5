//! Params, results and events of contacts, presence and chat (`contacts.*`, `presence.*`,
//! `chat.*`; `contact.request`, `contact.changed`, `presence.changed`, `message.*`,
//! `chat.*` events).

use serde::{Deserialize, Serialize};

use crate::PeerId;
use crate::resource::Resource;

/// A contact's state, ours to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ContactState {
    /// Not a contact (removed, unblocked).
    None,
    /// We asked them.
    Outgoing,
    /// They asked us.
    Incoming,
    Accepted,
    Declined,
    Blocked,
}

/// What a peer (or we) can be set to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    #[default]
    Online,
    Away,
    Busy,
}

/// A contact's presence as shown: `offline` unless the hub or the peer says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum PresenceState {
    Online,
    Away,
    Busy,
    Offline,
}

/// A contact's presence (not stored: only true while we hear it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Presence {
    pub online: bool,
    pub state: PresenceState,
    /// The status text (≤ 280 bytes); empty while offline.
    pub text: String,
}

/// A contact: a Peer resource (`peer:<PeerId>`) with its presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Contact {
    pub peer_id: PeerId,
    /// `alice@hub`, from the hub's signed directory.
    pub name: Option<String>,
    pub title: Option<String>,
    pub state: ContactState,
    /// The text of their contact request.
    pub request_message: Option<String>,
    pub nickname: Option<String>,
    pub presence: Presence,
}

/// How a letter was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Delivered {
    /// Over a direct connection.
    Direct,
    /// Through the hub's relay.
    Relayed,
    /// Sealed into the recipient's mailbox at the hub.
    Mailed,
}

/// `contacts.add`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AddContactParams {
    /// `name@hub`, a PeerId or an invite code (`apinvite1…`).
    pub who: String,
    /// A note to the peer (≤ 512 bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `contacts.add`'s result: the contact, and how the request went when one was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AddedContact {
    #[serde(flatten)]
    pub contact: Contact,
    /// Absent when no request was sent (already a contact, or they had asked us).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub delivered: Option<Delivered>,
}

/// `contacts.invite`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Invite {
    /// `apinvite1…`: our PeerId, name, home hub, and a token that makes a request
    /// carrying it accepted at once.
    pub code: String,
    /// Unix milliseconds (14 days on).
    pub expires: u64,
}

/// `presence.set`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PresenceParams {
    pub state: Availability,
    /// ≤ 280 bytes are kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// Our own presence (`presence.set`, `presence.get`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OwnPresence {
    pub state: Availability,
    pub text: String,
}

/// A recipient's receipt of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Receipt {
    pub peer_id: PeerId,
    pub delivered: bool,
    pub read: bool,
}

/// A message: a Message resource (`m:<sender>:<id>`) as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Message {
    pub id: String,
    /// The chat's id.
    pub chat: String,
    pub sender: PeerId,
    /// We sent it.
    pub outgoing: bool,
    pub body: String,
    /// The sender's clock, unix ms.
    pub sent: Option<i64>,
    /// Hybrid logical clock: the conversation's order, right across clock skew.
    pub hlc: String,
    pub edited: bool,
    /// Deleted: the body is empty.
    pub deleted: bool,
    pub read: bool,
    /// Recipients not reached yet.
    pub pending: Vec<PeerId>,
    pub receipts: Vec<Receipt>,
    /// The attached Link resource.
    pub link: Option<Resource>,
    /// The web app (its origin) that sent it on the sender's behalf (`messages.send`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub via: Option<String>,
}

/// A conversation: a Chat resource with its unread count and last message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Chat {
    /// `dm-…` (the same on both sides) or `grp-…`.
    pub id: String,
    pub title: Option<String>,
    pub group: bool,
    pub participants: Vec<PeerId>,
    pub creator: Option<PeerId>,
    pub unread: u64,
    pub last: Option<Box<Message>>,
}

/// `chat.create_group`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct CreateGroupParams {
    pub title: String,
    /// PeerIds of contacts (fewer than 64).
    pub members: Vec<PeerId>,
}

/// A link attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields))]
#[serde(deny_unknown_fields)]
pub struct LinkParams {
    /// http or https only.
    pub url: String,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Base64 of a small preview image (≤ 16 KiB).
    pub preview: Option<String>,
}

/// `chat.send`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields))]
#[serde(deny_unknown_fields)]
pub struct SendParams {
    pub chat: String,
    /// ≤ 16 KiB; may be empty with a link.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[cfg_attr(feature = "ts", ts(as = "Option<String>", optional))]
    pub body: String,
    pub link: Option<LinkParams>,
}

/// `chat.history`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS), ts(optional_fields))]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    pub chat: String,
    /// Only messages before this `hlc`.
    pub before: Option<String>,
    /// Default 50, at most 500.
    pub limit: Option<u64>,
}

/// `chat.edit`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct EditParams {
    /// One of our own messages.
    pub message: String,
    pub body: String,
}

/// `chat.delete`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct MessageParams {
    /// One of our own messages.
    pub message: String,
}

/// `{"chat": id}`: `chat.read`'s and `chat.typing`'s params, `chat.typing`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ChatParams {
    pub chat: String,
}

/// `chat.read`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReadResult {
    pub chat: String,
    /// Messages marked read.
    pub marked: u64,
}

/// `presence.changed`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PresenceChange {
    pub peer_id: PeerId,
    pub online: bool,
    pub state: PresenceState,
    pub text: String,
}

/// `contact.request`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ContactRequestData {
    pub peer_id: PeerId,
    pub message: String,
    pub contact: Contact,
}

/// What a receipt says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ReceiptKind {
    /// Sealed into their mailbox at the hub: it left us.
    Queued,
    Delivered,
    Read,
}

/// `chat.receipt`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReceiptData {
    /// The message's id.
    pub message: String,
    pub chat: String,
    pub peer_id: PeerId,
    pub kind: ReceiptKind,
    /// How our letter went, for receipts we made on sending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub via: Option<Delivered>,
}

/// `chat.typing`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TypingData {
    pub chat: String,
    pub peer_id: PeerId,
}

/// `events.dropped`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DroppedData {
    /// Events this client lost.
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn peer(n: u8) -> PeerId {
        PeerId::from_public_key([n; 32])
    }

    #[test]
    fn a_contact_reads_and_writes_todays_json() {
        let wire = json!({"peer_id": peer(1), "name": "bob@hub", "title": null,
            "state": "outgoing", "request_message": null, "nickname": null,
            "presence": {"online": false, "state": "offline", "text": ""},
            "delivered": "mailed"});
        let added: AddedContact = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(added.delivered, Some(Delivered::Mailed));
        assert_eq!(added.contact.state, ContactState::Outgoing);
        assert_eq!(serde_json::to_value(&added).unwrap(), wire);
        let plain = AddedContact {
            delivered: None,
            ..added
        };
        assert!(
            serde_json::to_value(plain)
                .unwrap()
                .get("delivered")
                .is_none()
        );
    }

    #[test]
    fn a_chat_with_its_last_message_round_trips() {
        let message = json!({"id": "m:x:1", "chat": "dm-1", "sender": peer(2), "outgoing": false,
            "body": "hi", "sent": 1700000000000i64, "hlc": "0001", "edited": false,
            "deleted": false, "read": true, "pending": [], "receipts":
            [{"peer_id": peer(1), "delivered": true, "read": false}], "link": null});
        let chat = json!({"id": "dm-1", "title": null, "group": false,
            "participants": [peer(1), peer(2)], "creator": null, "unread": 0, "last": message});
        let parsed: Chat = serde_json::from_value(chat.clone()).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), chat);
    }

    #[test]
    fn params_take_what_clients_send() {
        let p: SendParams = serde_json::from_value(
            json!({"chat": "c", "link": {"url": "https://example.org", "title": "t"}}),
        )
        .unwrap();
        assert_eq!(p.body, "");
        assert!(serde_json::from_value::<SendParams>(json!({"chat": "c", "x": 1})).is_err());
        let p: PresenceParams = serde_json::from_value(json!({"state": "away"})).unwrap();
        assert_eq!(p.state, Availability::Away);
        assert!(serde_json::from_value::<PresenceParams>(json!({"state": "gone"})).is_err());
        let r = ReceiptData {
            message: "m".into(),
            chat: "c".into(),
            peer_id: peer(3),
            kind: ReceiptKind::Queued,
            via: Some(Delivered::Mailed),
        };
        assert_eq!(serde_json::to_value(r).unwrap()["via"], "mailed");
    }
}
