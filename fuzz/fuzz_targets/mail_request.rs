//! Fuzzes the hub's e-mail gateway decoder (`allpeers_hub_client::mail_check::decode_request`):
//! whatever a peer sends must give a typed error or a request whose every field is within
//! its bound and free of control characters (no header injection), and checking a checked
//! request again must change nothing.
#![no_main]

use allpeers_hub_client::mail::{
    MAX_ADDRESS, MAX_CODE, MAX_INVITE_CODE, MAX_NOTE, MAX_TITLE, MAX_WAITING_COUNT, MailRequest,
    Notice,
};
use allpeers_hub_client::mail_check::{check_request, decode_request};
use libfuzzer_sys::fuzz_target;

fn clean(text: &str) -> bool {
    !text.chars().any(|c| c.is_control())
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode_request(data) else {
        return;
    };
    match &request {
        MailRequest::SetAddress { address } => {
            assert!(address.len() <= MAX_ADDRESS && clean(address) && !address.contains(' '));
        }
        MailRequest::Invite {
            address,
            invite_code,
            note,
        } => {
            assert!(address.len() <= MAX_ADDRESS && clean(address));
            assert!(invite_code.len() <= MAX_INVITE_CODE && clean(invite_code));
            if let Some(note) = note {
                assert!(note.chars().count() <= MAX_NOTE && clean(note) && !note.is_empty());
            }
        }
        MailRequest::Notify { notice, .. } => match notice {
            Notice::Shared { title } => {
                assert!(title.chars().count() <= MAX_TITLE && clean(title) && !title.is_empty());
            }
            Notice::Waiting { count } => assert!((1..=MAX_WAITING_COUNT).contains(count)),
        },
        MailRequest::Confirm { code } => assert!(code.len() <= MAX_CODE),
        MailRequest::SetPreferences(_) | MailRequest::Status | MailRequest::UnsubscribeAll => {}
    }
    assert_eq!(check_request(request.clone()).as_ref(), Ok(&request));
});
