//! Params, results and errors of e-mail through the home hub's gateway (`mail.*`): an
//! address registered and confirmed (double opt-in), which notices it accepts, invitations
//! to an address, notices to a contact, one stop-all. The hub keeps the address: no other
//! peer ever sees it, and the node sees it back only masked (`a***@example.org`).

use serde::{Deserialize, Serialize};

use crate::PeerId;

pub const MAIL_STATUS: &str = "mail.status";
pub const MAIL_SET_ADDRESS: &str = "mail.set_address";
pub const MAIL_CONFIRM: &str = "mail.confirm";
pub const MAIL_PREFERENCES: &str = "mail.preferences";
pub const MAIL_INVITE: &str = "mail.invite";
pub const MAIL_NOTIFY: &str = "mail.notify";
pub const MAIL_UNSUBSCRIBE: &str = "mail.unsubscribe";

/// The `mail` area's methods.
pub const METHODS: &[&str] = &[
    MAIL_STATUS,
    MAIL_SET_ADDRESS,
    MAIL_CONFIRM,
    MAIL_PREFERENCES,
    MAIL_INVITE,
    MAIL_NOTIFY,
    MAIL_UNSUBSCRIBE,
];

/// Which kinds of mail the address accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MailPreferences {
    /// "Alice shared 'Holiday 2026' with you".
    pub share: bool,
    /// Invitations to AllPeers sent to this address.
    pub invitation: bool,
    /// "A message from alice is waiting for you" while we are offline.
    pub waiting: bool,
    /// A digest from the hub, "3 messages are waiting for you", while letters wait for us
    /// there (at most daily, and only when the count changed).
    pub digest: bool,
}

/// `mail.status`, and the answer of `mail.confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MailStatus {
    /// The registered address, masked (`a***@example.org`); null: none.
    pub address: Option<String>,
    pub confirmed: bool,
    /// Null without an address.
    pub preferences: Option<MailPreferences>,
}

/// `mail.set_address`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SetAddressParams {
    /// A bare `local@domain` (ASCII, at most 254 characters).
    pub address: String,
}

/// `mail.set_address`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SetAddressResult {
    /// The address, masked.
    pub address: String,
    /// True when this address was already confirmed (no mail is sent).
    pub confirmed: bool,
    /// How long the mailed code works (null when already confirmed).
    pub expires_in_secs: Option<u64>,
}

/// `mail.confirm`'s params: the code from the confirmation mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ConfirmParams {
    pub code: String,
}

/// `mail.preferences`' params: the kinds to change; none given reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PreferencesParams {
    #[serde(default)]
    pub share: Option<bool>,
    #[serde(default)]
    pub invitation: Option<bool>,
    #[serde(default)]
    pub waiting: Option<bool>,
    #[serde(default)]
    pub digest: Option<bool>,
}

/// `mail.invite`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct MailInviteParams {
    /// Who to invite.
    pub address: String,
    /// A few words shown in the mail as plain text (at most 280 characters).
    #[serde(default)]
    pub note: Option<String>,
}

/// `mail.invite`'s result: the mail is queued at the hub with a fresh invite code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MailInviteResult {
    pub address: String,
    /// Unix milliseconds when the mailed invite code stops working.
    pub expires: u64,
}

/// What a notice tells a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MailNotice {
    /// "alice shared 'title' with you".
    Shared { title: String },
    /// "`count` messages from alice are waiting for you" (never their content).
    Waiting { count: u32 },
}

/// `mail.notify`'s params: a notice to a contact, if its address accepts the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct NotifyParams {
    pub peer: PeerId,
    pub notice: MailNotice,
}

/// `mail.notify`'s result. `sent: false` is one answer for every reason (no address, not
/// accepted, over the recipient's limit): the sender learns nothing about the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NotifyResult {
    pub sent: bool,
}

/// `mail.unsubscribe`'s result: the address gets no more mail and is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UnsubscribeResult {
    pub unsubscribed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn notices_are_tagged_by_kind() {
        let n: MailNotice = serde_json::from_value(json!({"kind": "waiting", "count": 2})).unwrap();
        assert_eq!(n, MailNotice::Waiting { count: 2 });
        let p: PreferencesParams = serde_json::from_value(json!({"waiting": false})).unwrap();
        assert_eq!(p.waiting, Some(false));
        assert_eq!(p.share, None);
        assert!(serde_json::from_value::<PreferencesParams>(json!({"spam": true})).is_err());
    }
}
