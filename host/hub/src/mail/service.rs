//! `allpeers/hub-mail/1` on the hub: consent (register, confirm, preferences, stop all),
//! notices to peers and invitations to addresses, under the rate limits. Answers never
//! carry an address other than the asker's own, masked.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use allpeers_hub_client::proto::app_error;
use allpeers_model::PeerId;
use allpeers_net::service::{BoxFuture, encode};
use allpeers_net::{Context, RemoteError, Service};
use bytes::Bytes;

use super::proto::{
    self, MAIL_LIMIT, MailRequest, MailResponse, MailStatus, Notice, NotifyOutcome, ProtoError,
    code,
};
use super::store::StoreError;
use super::template::Letter;
use super::{Inner, now_ms, tokens};

const DAY_MS: u64 = 24 * 3600 * 1000;
/// The same address set again within this time keeps the code already mailed: the
/// framework retries a request whose connection was lost (the hub may see it twice), and
/// people press buttons twice. Later, a new code replaces the old one.
const SAME_ADDRESS_WINDOW_MS: u64 = 60_000;

/// The gateway's service (register under [`proto::mail_ns`]).
pub struct MailService(pub(crate) Arc<Inner>);

impl Service for MailService {
    fn max_message_size(&self) -> usize {
        MAIL_LIMIT
    }
    fn request(&self, ctx: Context, body: Bytes) -> BoxFuture<Result<Bytes, RemoteError>> {
        let inner = self.0.clone();
        Box::pin(async move {
            let request = proto::decode_request(&body).map_err(refusal)?;
            let answer = inner.handle(ctx.peer, request).await?;
            encode(&answer).map_err(|e| RemoteError::internal(e.to_string()))
        })
    }
}

fn refusal(e: ProtoError) -> RemoteError {
    match e {
        ProtoError::Address(_) => app_error(code::BAD_ADDRESS, e.to_string()),
        ProtoError::Field { .. } => app_error(code::BAD_FIELD, e.to_string()),
        ProtoError::TooLarge | ProtoError::Decode(_) => RemoteError::bad_request(e.to_string()),
    }
}

fn internal(e: StoreError) -> RemoteError {
    allpeers_log::marrow!("mail gateway: {e}");
    RemoteError::internal("the hub's mail store failed")
}

fn rate_limited(what: &str) -> RemoteError {
    app_error(code::RATE_LIMITED, format!("{what}: try later"))
}

impl Inner {
    /// Answers one checked request from `peer`.
    pub(crate) async fn handle(
        &self,
        peer: PeerId,
        request: MailRequest,
    ) -> Result<MailResponse, RemoteError> {
        let now = now_ms();
        match request {
            MailRequest::SetAddress { address } => self.set_address(peer, &address, now).await,
            MailRequest::Confirm { code } => self.confirm_code(peer, &code, now).await,
            MailRequest::SetPreferences(p) => {
                let store = &self.store;
                if !store.set_preferences(&peer, p).await.map_err(internal)? {
                    return Err(app_error(code::NO_ADDRESS, "no address registered"));
                }
                Ok(MailResponse::Preferences(p))
            }
            MailRequest::Status => {
                let reg = self.store.registration(&peer).await.map_err(internal)?;
                Ok(MailResponse::Status(reg.map(|r| MailStatus {
                    masked: proto::mask_address(&r.address),
                    confirmed: r.confirmed,
                    preferences: r.preferences,
                })))
            }
            MailRequest::UnsubscribeAll => {
                let store = &self.store;
                let Some(reg) = store.registration(&peer).await.map_err(internal)? else {
                    return Err(app_error(code::NO_ADDRESS, "no address registered"));
                };
                // Only an owner who proved the address (confirmed it) may put it on the
                // suppression list: anyone can register any address, and a suppression
                // would stop its real owner's mail. An unconfirmed one is only forgotten.
                if reg.confirmed {
                    store
                        .suppress(&reg.recipient, "unsubscribed", now)
                        .await
                        .map_err(internal)?;
                    self.counters.unsubscribed.fetch_add(1, Ordering::Relaxed);
                }
                store.forget(&peer).await.map_err(internal)?;
                allpeers_log::flesh!(
                    ?peer,
                    confirmed = reg.confirmed,
                    "mail: the peer's registration dropped"
                );
                Ok(MailResponse::Unsubscribed)
            }
            MailRequest::Notify { to, notice } => self.notify(peer, to, notice, now).await,
            MailRequest::Invite {
                address,
                invite_code,
                note,
            } => self.invite(peer, &address, invite_code, note, now).await,
        }
    }

    fn check_sender_rate(&self, peer: &PeerId) -> Result<(), RemoteError> {
        self.per_sender.check_key(peer).map_err(|_| {
            rate_limited(&format!(
                "at most {} mails per hour from one peer",
                self.config.limits.per_sender_per_hour
            ))
        })
    }

    /// The recipient's and the hub's daily limits.
    pub(super) async fn within_daily_limits(
        &self,
        recipient: &[u8; 32],
        now: u64,
    ) -> Result<bool, RemoteError> {
        let store = &self.store;
        let since = now.saturating_sub(DAY_MS);
        if store.count_all(since).await.map_err(internal)?
            >= u64::from(self.config.limits.daily_cap)
        {
            return Err(rate_limited("the hub's daily mail cap is reached"));
        }
        Ok(store
            .count_for_recipient(recipient, since)
            .await
            .map_err(internal)?
            < u64::from(self.config.limits.per_recipient_per_day))
    }

    async fn sender_name(&self, peer: &PeerId) -> Result<String, RemoteError> {
        let name = self.store.registered_name(peer).await.map_err(internal)?;
        name.map(|n| format!("{n}@{}", self.hub_name))
            .ok_or_else(|| {
                app_error(
                    code::NO_ADDRESS,
                    "register a name at this hub first: mail names its sender by it",
                )
            })
    }

    pub(super) async fn enqueue(
        &self,
        recipient: &[u8; 32],
        address: &str,
        letter: &Letter,
        now: u64,
    ) -> Result<(), RemoteError> {
        let json =
            serde_json::to_string(letter).map_err(|e| RemoteError::internal(e.to_string()))?;
        let id = self
            .store
            .enqueue(letter.kind(), recipient, address, &json, now)
            .await
            .map_err(internal)?;
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        allpeers_log::bone!(id, kind = letter.kind(), "mail queued");
        self.wake.notify_one();
        Ok(())
    }

    async fn set_address(
        &self,
        peer: PeerId,
        address: &str,
        now: u64,
    ) -> Result<MailResponse, RemoteError> {
        let recipient = self.keys.recipient(address);
        let suppressed = self.store.suppression(&recipient).await.map_err(internal)?;
        if suppressed.as_deref() == Some("bounce") {
            return Err(app_error(code::DECLINED, "mail to this address bounced"));
        }
        let known = self.store.registration(&peer).await.map_err(internal)?;
        if let Some(reg) = known
            && reg.address == address
        {
            if reg.confirmed && suppressed.is_none() {
                return Ok(MailResponse::Confirmed);
            }
            if now.saturating_sub(reg.updated_at) < SAME_ADDRESS_WINDOW_MS {
                return Ok(MailResponse::AddressSet {
                    masked: proto::mask_address(address),
                    expires_in_secs: reg.code_expires.saturating_sub(now) / 1000,
                });
            }
        }
        self.check_sender_rate(&peer)?;
        if !self.within_daily_limits(&recipient, now).await? {
            return Err(rate_limited("too much mail to this address today"));
        }
        // An address that asked for no mail gets at most one confirmation a day (its owner
        // may want back in; nobody else may use it to pester them).
        if suppressed.is_some()
            && self
                .store
                .count_for_recipient(&recipient, now.saturating_sub(DAY_MS))
                .await
                .map_err(internal)?
                > 0
        {
            return Err(rate_limited("this address got a confirmation today"));
        }
        let (code, link) = tokens::fresh_code_and_link();
        let minutes = u64::from(self.config.limits.confirm_minutes.max(1));
        let expires = now + minutes * 60_000;
        self.store
            .set_address(
                &peer,
                address,
                &recipient,
                &tokens::secret_hash(&code),
                &tokens::secret_hash(&link),
                expires,
                now,
            )
            .await
            .map_err(internal)?;
        let letter = Letter::Confirm {
            code,
            link: self.confirm_url(&link),
        };
        self.enqueue(&recipient, address, &letter, now).await?;
        allpeers_log::flesh!(?peer, "mail: address registered, confirmation queued");
        Ok(MailResponse::AddressSet {
            masked: proto::mask_address(address),
            expires_in_secs: minutes * 60,
        })
    }

    async fn confirm_code(
        &self,
        peer: PeerId,
        code: &str,
        now: u64,
    ) -> Result<MailResponse, RemoteError> {
        let store = &self.store;
        let Some(reg) = store.registration(&peer).await.map_err(internal)? else {
            return Err(app_error(code::NO_ADDRESS, "no address registered"));
        };
        if reg.confirmed {
            return Ok(MailResponse::Confirmed);
        }
        let bad = |why: &str| app_error(code::BAD_CODE, why.to_string());
        if reg.code_expires <= now {
            return Err(bad("the code expired: set the address again"));
        }
        if reg.attempts >= self.config.limits.confirm_attempts {
            return Err(bad("too many wrong codes: set the address again"));
        }
        let given = blake3::Hash::from_bytes(tokens::secret_hash(code));
        if reg.code_hash.map(blake3::Hash::from_bytes) != Some(given) {
            store.count_attempt(&peer).await.map_err(internal)?;
            return Err(bad("wrong code"));
        }
        store.confirm(&peer).await.map_err(internal)?;
        allpeers_log::flesh!(?peer, "mail: address confirmed");
        Ok(MailResponse::Confirmed)
    }

    /// Confirms through the mailed link (the HTTP listener).
    pub(crate) async fn confirm_link(&self, link_secret: &str) -> Result<bool, StoreError> {
        if link_secret.len() > tokens::TOKEN_CHARS {
            return Ok(false);
        }
        let store = &self.store;
        match store
            .peer_of_link(&tokens::secret_hash(link_secret), now_ms())
            .await?
        {
            Some(peer) => {
                store.confirm(&peer).await?;
                allpeers_log::flesh!(?peer, "mail: address confirmed by link");
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// One-click unsubscribe (the HTTP listener): `true` if the token is ours.
    pub(crate) async fn unsubscribe_token(&self, token: &str) -> Result<bool, StoreError> {
        let Some(recipient) = self.keys.check(tokens::Purpose::Unsubscribe, token) else {
            return Ok(false);
        };
        self.store
            .suppress(&recipient, "unsubscribed", now_ms())
            .await?;
        self.counters.unsubscribed.fetch_add(1, Ordering::Relaxed);
        allpeers_log::flesh!("mail: an address unsubscribed by link");
        Ok(true)
    }

    async fn notify(
        &self,
        peer: PeerId,
        to: PeerId,
        notice: Notice,
        now: u64,
    ) -> Result<MailResponse, RemoteError> {
        let sender = self.sender_name(&peer).await?;
        self.check_sender_rate(&peer)?;
        let Some(reg) = self.store.registration(&to).await.map_err(internal)? else {
            return Ok(MailResponse::Notified(NotifyOutcome::NotSent));
        };
        let accepted = match notice {
            Notice::Shared { .. } => reg.preferences.share,
            Notice::Waiting { .. } => reg.preferences.waiting,
        };
        let suppressed = self
            .store
            .suppression(&reg.recipient)
            .await
            .map_err(internal)?;
        if !reg.confirmed || !accepted || suppressed.is_some() {
            return Ok(MailResponse::Notified(NotifyOutcome::NotSent));
        }
        // Over the recipient's daily limit: not sent, in the same words (a "rate limited"
        // would tell the sender the peer has an address).
        if !self.within_daily_limits(&reg.recipient, now).await? {
            return Ok(MailResponse::Notified(NotifyOutcome::NotSent));
        }
        let letter = match notice {
            Notice::Shared { title } => Letter::Shared { sender, title },
            Notice::Waiting { count } => Letter::Waiting { sender, count },
        };
        self.enqueue(&reg.recipient, &reg.address, &letter, now)
            .await?;
        Ok(MailResponse::Notified(NotifyOutcome::Queued))
    }

    async fn invite(
        &self,
        peer: PeerId,
        address: &str,
        invite_code: String,
        note: Option<String>,
        now: u64,
    ) -> Result<MailResponse, RemoteError> {
        let sender = self.sender_name(&peer).await?;
        self.check_sender_rate(&peer)?;
        let recipient = self.keys.recipient(address);
        let declined = || {
            app_error(
                code::DECLINED,
                "this address takes no invitation from this hub now",
            )
        };
        {
            let store = &self.store;
            if store
                .suppression(&recipient)
                .await
                .map_err(internal)?
                .is_some()
                || store
                    .refuses_invitations(&recipient)
                    .await
                    .map_err(internal)?
            {
                return Err(declined());
            }
            let repeat = u64::from(self.config.limits.invite_repeat_days) * DAY_MS;
            if store
                .last_invited(&recipient)
                .await
                .map_err(internal)?
                .is_some_and(|at| now.saturating_sub(at) < repeat)
            {
                return Err(declined());
            }
        }
        if !self.within_daily_limits(&recipient, now).await? {
            return Err(rate_limited("too much mail to this address today"));
        }
        let letter = Letter::Invite {
            sender,
            invite_code,
            note,
        };
        self.enqueue(&recipient, address, &letter, now).await?;
        allpeers_log::flesh!(?peer, "mail: invitation queued");
        Ok(MailResponse::Invited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::config::{MailConfig, MailLimits};
    use crate::mail::{MailDb, MailGateway, proto::Preferences};

    /// A gateway whose SMTP server is not there (nothing is delivered; the decisions are
    /// what is tested), and three peers, two with names.
    async fn gateway(limits: MailLimits) -> (tempfile::TempDir, MailGateway, [PeerId; 3]) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.db");
        crate::db::Db::open(&db).unwrap();
        let peers = [1u8, 2, 3].map(|b| PeerId::from_public_key([b; 32]));
        let conn = rusqlite::Connection::open(&db).unwrap();
        for (name, peer) in [("alice", peers[0]), ("bob", peers[1])] {
            conn.execute(
                "INSERT INTO names (name, peer, cert, registered_at) VALUES (?1, ?2, x'', 0)",
                rusqlite::params![name, peer.to_string()],
            )
            .unwrap();
        }
        let mut config = MailConfig {
            limits,
            ..MailConfig::default()
        };
        config.smtp.port = 1;
        config.http.listen = "127.0.0.1:0".parse().unwrap();
        let identity = allpeers_net::Identity::generate();
        let g = MailGateway::start(config, "hub.test", &identity, MailDb::Sqlite(&db))
            .await
            .unwrap();
        (dir, g, peers)
    }

    fn code_of(r: Result<MailResponse, RemoteError>) -> Option<u32> {
        match r {
            Err(RemoteError {
                code: allpeers_net::service::ErrorCode::Application(c),
                ..
            }) => Some(c),
            _ => None,
        }
    }

    fn invite(address: &str) -> MailRequest {
        MailRequest::Invite {
            address: address.into(),
            invite_code: "apinvite1abc".into(),
            note: None,
        }
    }

    #[tokio::test]
    async fn invitations_once_per_window_and_never_to_who_refuses() {
        let (_d, g, [alice, bob, _]) = gateway(MailLimits::default()).await;
        let inner = &g.inner;
        assert_eq!(
            inner
                .handle(alice, invite("dave@example.test"))
                .await
                .unwrap(),
            MailResponse::Invited
        );
        // Within invite_repeat_days, by anyone: declined.
        assert_eq!(
            code_of(inner.handle(bob, invite("dave@example.test")).await),
            Some(code::DECLINED)
        );
        // An owner who turned invitations off is never invited.
        let store = &inner.store;
        let r = inner.keys.recipient("erin@example.test");
        store
            .set_address(
                &bob,
                "erin@example.test",
                &r,
                &[0; 32],
                &[0; 32],
                u64::MAX,
                0,
            )
            .await
            .unwrap();
        inner.store.confirm(&bob).await.unwrap();
        inner
            .handle(
                bob,
                MailRequest::SetPreferences(Preferences {
                    invitation: false,
                    ..Preferences::ALL
                }),
            )
            .await
            .unwrap();
        assert_eq!(
            code_of(inner.handle(alice, invite("erin@example.test")).await),
            Some(code::DECLINED)
        );
    }

    #[tokio::test]
    async fn an_unconfirmed_registration_cannot_suppress_the_address() {
        let (_d, g, [alice, bob, _]) = gateway(MailLimits::default()).await;
        let inner = &g.inner;
        // Bob owns and confirmed the address; alice registers it too, never confirms, and
        // asks for no more mail.
        let r = inner.keys.recipient("bob@example.test");
        let store = &inner.store;
        store
            .set_address(
                &bob,
                "bob@example.test",
                &r,
                &[0; 32],
                &[0; 32],
                u64::MAX,
                0,
            )
            .await
            .unwrap();
        store
            .set_address(
                &alice,
                "bob@example.test",
                &r,
                &[0; 32],
                &[0; 32],
                u64::MAX,
                0,
            )
            .await
            .unwrap();
        inner.store.confirm(&bob).await.unwrap();
        assert_eq!(
            inner
                .handle(alice, MailRequest::UnsubscribeAll)
                .await
                .unwrap(),
            MailResponse::Unsubscribed
        );
        assert_eq!(inner.store.suppression(&r).await.unwrap(), None);
        assert!(inner.store.registration(&alice).await.unwrap().is_none());
        // Bob still gets his notices.
        assert_eq!(
            inner
                .handle(
                    alice,
                    MailRequest::Notify {
                        to: bob,
                        notice: Notice::Waiting { count: 1 }
                    }
                )
                .await
                .unwrap(),
            MailResponse::Notified(NotifyOutcome::Queued)
        );
        // The owner's own stop-all does suppress it.
        inner
            .handle(bob, MailRequest::UnsubscribeAll)
            .await
            .unwrap();
        assert_eq!(
            inner.store.suppression(&r).await.unwrap().as_deref(),
            Some("unsubscribed")
        );
    }

    #[tokio::test]
    async fn recipient_limit_hides_the_address_and_the_daily_cap_refuses() {
        let limits = MailLimits {
            per_recipient_per_day: 2,
            daily_cap: 4,
            ..MailLimits::default()
        };
        let (_d, g, [alice, bob, carol]) = gateway(limits).await;
        let inner = &g.inner;
        let r = inner.keys.recipient("bob@example.test");
        inner
            .store
            .set_address(
                &bob,
                "bob@example.test",
                &r,
                &[0; 32],
                &[0; 32],
                u64::MAX,
                0,
            )
            .await
            .unwrap();
        inner.store.confirm(&bob).await.unwrap();
        let notify = || MailRequest::Notify {
            to: bob,
            notice: Notice::Waiting { count: 1 },
        };
        assert_eq!(
            inner.handle(alice, notify()).await.unwrap(),
            MailResponse::Notified(NotifyOutcome::Queued)
        );
        assert_eq!(
            inner.handle(alice, notify()).await.unwrap(),
            MailResponse::Notified(NotifyOutcome::Queued)
        );
        // The recipient's limit: "not sent", the same answer as for a peer without address.
        assert_eq!(
            inner.handle(alice, notify()).await.unwrap(),
            MailResponse::Notified(NotifyOutcome::NotSent)
        );
        let nobody = MailRequest::Notify {
            to: carol,
            notice: Notice::Waiting { count: 1 },
        };
        assert_eq!(
            inner.handle(alice, nobody).await.unwrap(),
            MailResponse::Notified(NotifyOutcome::NotSent)
        );
        // A sender without a name cannot send.
        assert_eq!(
            code_of(inner.handle(carol, notify()).await),
            Some(code::NO_ADDRESS)
        );
        // The hub's cap (4 a day): two more, then refused.
        inner
            .handle(alice, invite("x1@example.test"))
            .await
            .unwrap();
        inner
            .handle(alice, invite("x2@example.test"))
            .await
            .unwrap();
        assert_eq!(
            code_of(inner.handle(alice, invite("x3@example.test")).await),
            Some(code::RATE_LIMITED)
        );
    }
}
