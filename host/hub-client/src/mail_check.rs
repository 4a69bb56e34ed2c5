//! The checked decoder of `allpeers/hub-mail/1` requests, as the hub's e-mail gateway runs it:
//! every field's bound and form, with the full address syntax check (lettre's). Behind the
//! `checked` feature: the hub and the fuzz target use it; a node never links a mail library.

use crate::mail::*;

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
            note,
        } => MailRequest::Invite {
            address: fold_address(&address)?,
            invite_code: check_invite_code(&invite_code)?,
            note: note.map(|n| clean_text("note", &n, MAX_NOTE)).transpose()?,
        },
        other @ (MailRequest::SetPreferences(_)
        | MailRequest::Status
        | MailRequest::UnsubscribeAll) => other,
    })
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
}
