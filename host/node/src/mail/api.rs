//! The `mail.*` methods: each is one request to the home hub's e-mail gateway, with its
//! refusals mapped to the mail codes (`-32070…`). The hub decides everything about the
//! address (syntax, consent, limits); the node adds what only it knows: its invite code for
//! `mail.invite`, and that `mail.notify` goes to accepted contacts only.

use std::sync::Arc;

use allpeers_hub_client::mail::{
    self as proto, MailRequest, MailResponse, Notice, NotifyOutcome, Preferences, code,
};
use allpeers_hub_client::{HubClient, HubError};
use allpeers_model::api::mail::{
    self as m, ConfirmParams, MailInviteParams, MailInviteResult, MailNotice, MailPreferences,
    MailStatus, NotifyParams, NotifyResult, PreferencesParams, SetAddressParams, SetAddressResult,
    UnsubscribeResult,
};
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_net::NetError;
use allpeers_net::service::ErrorCode as NetCode;
use serde_json::Value;

use crate::daemon::area::Area;
use crate::daemon::rpc::{app_error, codes, parse, to_value};
use crate::daemon::state::Daemon;
use crate::social::contacts::{self, ContactState};

pub const AREA: Area = Area {
    name: "mail",
    methods: m::METHODS,
    handle: |call| Box::pin(handle(call.daemon, call.method, call.params)),
    slow: &[],
};

async fn handle(daemon: &Arc<Daemon>, method: &str, params: Value) -> Result<Value, RpcError> {
    let hub = crate::hub::client(daemon)?;
    match method {
        m::MAIL_STATUS => Ok(to_value(status(hub).await?)),
        m::MAIL_SET_ADDRESS => {
            let p: SetAddressParams = parse(params)?;
            let address = p.address.trim().to_string();
            let result = match ask(
                hub,
                MailRequest::SetAddress {
                    address: address.clone(),
                },
            )
            .await?
            {
                MailResponse::AddressSet {
                    masked,
                    expires_in_secs,
                } => SetAddressResult {
                    address: masked,
                    confirmed: false,
                    expires_in_secs: Some(expires_in_secs),
                },
                MailResponse::Confirmed => SetAddressResult {
                    address: proto::mask_address(&address.to_ascii_lowercase()),
                    confirmed: true,
                    expires_in_secs: None,
                },
                other => return Err(unexpected(other)),
            };
            Ok(to_value(result))
        }
        m::MAIL_CONFIRM => {
            let p: ConfirmParams = parse(params)?;
            match ask(hub, MailRequest::Confirm { code: p.code }).await? {
                MailResponse::Confirmed => Ok(to_value(status(hub).await?)),
                other => Err(unexpected(other)),
            }
        }
        m::MAIL_PREFERENCES => {
            let p: PreferencesParams = parse(params)?;
            let current = status(hub).await?.preferences.ok_or_else(|| {
                app_error(
                    ErrorCode::MailNoAddress.code(),
                    "no e-mail address registered: mail.set_address first",
                )
            })?;
            let wanted = MailPreferences {
                share: p.share.unwrap_or(current.share),
                invitation: p.invitation.unwrap_or(current.invitation),
                waiting: p.waiting.unwrap_or(current.waiting),
                digest: p.digest.unwrap_or(current.digest),
            };
            if wanted == current {
                return Ok(to_value(current));
            }
            match ask(hub, MailRequest::SetPreferences(to_proto(wanted))).await? {
                MailResponse::Preferences(set) => Ok(to_value(from_proto(set))),
                other => Err(unexpected(other)),
            }
        }
        m::MAIL_INVITE => {
            let p: MailInviteParams = parse(params)?;
            let (invite_code, expires) = crate::social::api::issue_invite(daemon).await?;
            let address = p.address.trim().to_string();
            let request = MailRequest::Invite {
                address: address.clone(),
                invite_code,
                note: p.note.filter(|n| !n.trim().is_empty()),
            };
            match ask(hub, request).await? {
                MailResponse::Invited => Ok(to_value(MailInviteResult { address, expires })),
                other => Err(unexpected(other)),
            }
        }
        m::MAIL_NOTIFY => {
            let p: NotifyParams = parse(params)?;
            let peer = p.peer;
            let state = daemon.on_store(move |s| contacts::state(s, &peer)).await?;
            if state != ContactState::Accepted {
                return Err(app_error(
                    codes::NOT_A_CONTACT,
                    format!("{peer} is not an accepted contact: notices go to contacts only"),
                ));
            }
            let notice = match p.notice {
                MailNotice::Shared { title } => Notice::Shared { title },
                MailNotice::Waiting { count } => Notice::Waiting { count },
            };
            match ask(hub, MailRequest::Notify { to: peer, notice }).await? {
                MailResponse::Notified(outcome) => Ok(to_value(NotifyResult {
                    sent: outcome == NotifyOutcome::Queued,
                })),
                other => Err(unexpected(other)),
            }
        }
        m::MAIL_UNSUBSCRIBE => match ask(hub, MailRequest::UnsubscribeAll).await? {
            MailResponse::Unsubscribed => Ok(to_value(UnsubscribeResult { unsubscribed: true })),
            other => Err(unexpected(other)),
        },
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method \"{other}\""),
        )),
    }
}

async fn ask(hub: &HubClient, request: MailRequest) -> Result<MailResponse, RpcError> {
    hub.mail(&request).await.map_err(rpc)
}

async fn status(hub: &HubClient) -> Result<MailStatus, RpcError> {
    match ask(hub, MailRequest::Status).await? {
        MailResponse::Status(Some(s)) => Ok(MailStatus {
            address: Some(s.masked),
            confirmed: s.confirmed,
            preferences: Some(from_proto(s.preferences)),
        }),
        MailResponse::Status(None) => Ok(MailStatus {
            address: None,
            confirmed: false,
            preferences: None,
        }),
        other => Err(unexpected(other)),
    }
}

fn from_proto(p: Preferences) -> MailPreferences {
    MailPreferences {
        share: p.share,
        invitation: p.invitation,
        waiting: p.waiting,
        digest: p.digest,
    }
}

fn to_proto(p: MailPreferences) -> Preferences {
    Preferences {
        share: p.share,
        invitation: p.invitation,
        waiting: p.waiting,
        digest: p.digest,
    }
}

fn unexpected(answer: MailResponse) -> RpcError {
    app_error(
        codes::ANSWER_REJECTED,
        format!("the hub's mail gateway answered out of turn: {answer:?}"),
    )
}

/// The gateway's refusals as the API's mail codes.
fn rpc(error: HubError) -> RpcError {
    let mail = match error.app_code() {
        Some(code::BAD_ADDRESS) => Some(ErrorCode::MailBadAddress),
        Some(code::NO_ADDRESS) => Some(ErrorCode::MailNoAddress),
        Some(code::BAD_CODE) => Some(ErrorCode::MailBadCode),
        Some(code::RATE_LIMITED) => Some(ErrorCode::MailRateLimited),
        Some(code::BAD_FIELD) => Some(ErrorCode::MailBadField),
        Some(code::DECLINED) => Some(ErrorCode::MailDeclined),
        _ => None,
    };
    let code = match (mail, &error) {
        (Some(c), _) => c.code(),
        (
            None,
            HubError::Refused {
                code: NetCode::UnknownNamespace | NetCode::Unsupported,
                ..
            }
            | HubError::Net(NetError::UnknownNamespace { .. }),
        ) => ErrorCode::MailNoGateway.code(),
        (
            None,
            HubError::Refused {
                code: NetCode::BadRequest | NetCode::TooLarge,
                ..
            },
        ) => ErrorCode::InvalidParams.code(),
        (None, HubError::Net(_) | HubError::Proxy(_) | HubError::Stopped) => codes::HUB_UNREACHABLE,
        _ => ErrorCode::Internal.code(),
    };
    app_error(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_hub_client::proto::app_error as hub_refusal;

    fn refused(code: u32) -> HubError {
        let e = hub_refusal(code, "no");
        HubError::Refused {
            code: e.code,
            message: e.message,
        }
    }

    #[test]
    fn refusals_map_into_the_mail_range() {
        for (hub, api) in [
            (code::BAD_ADDRESS, ErrorCode::MailBadAddress),
            (code::NO_ADDRESS, ErrorCode::MailNoAddress),
            (code::BAD_CODE, ErrorCode::MailBadCode),
            (code::RATE_LIMITED, ErrorCode::MailRateLimited),
            (code::BAD_FIELD, ErrorCode::MailBadField),
            (code::DECLINED, ErrorCode::MailDeclined),
        ] {
            let c = rpc(refused(hub)).code;
            assert_eq!(c, api.code());
            assert!((-32079..=-32070).contains(&c));
        }
        let none = HubError::Refused {
            code: NetCode::UnknownNamespace,
            message: "no service".into(),
        };
        assert_eq!(rpc(none).code, ErrorCode::MailNoGateway.code());
        assert_eq!(rpc(HubError::Stopped).code, codes::HUB_UNREACHABLE);
    }

    #[test]
    fn preferences_round_trip() {
        for bits in 0..16u8 {
            let p = Preferences::from_bits(bits);
            assert_eq!(to_proto(from_proto(p)), p);
        }
    }
}
