//! The fixed templates: each [`Letter`] renders to a subject, a plain-text part and an HTML
//! part, and [`compose`] makes the MIME message (multipart/alternative) with the
//! unsubscribe headers. Every data field is already bounded and cleaned of control
//! characters by `proto` (so no header can be injected through a subject), and is
//! HTML-escaped here wherever it enters HTML.

use lettre::Message;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use serde::{Deserialize, Serialize};

/// One mail to render: what the queue stores (as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Letter {
    /// Double opt-in: the code to type and a link to confirm in a browser.
    Confirm { code: String, link: String },
    /// `sender` (a registered `name@hub`) shared `title`.
    Shared { sender: String, title: String },
    /// `count` messages from `sender` wait at the hub.
    Waiting { sender: String, count: u32 },
    /// `count` letters from anyone wait for the recipient at the hub (the digest).
    Digest { count: u32 },
    /// `sender` invites the address, with its invite code.
    Invite {
        sender: String,
        invite_code: String,
        /// The sender's few words (cleaned and bounded by `proto`); absent in letters queued
        /// before notes existed.
        #[serde(default)]
        note: Option<String>,
    },
}

impl Letter {
    /// The kind's name in the queue and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Letter::Confirm { .. } => "confirm",
            Letter::Shared { .. } => "share",
            Letter::Waiting { .. } => "waiting",
            Letter::Digest { .. } => "digest",
            Letter::Invite { .. } => "invitation",
        }
    }
}

/// What the hub adds to every letter.
pub struct Site<'a> {
    pub hub_name: &'a str,
    pub unsubscribe_url: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Escapes text for HTML element content and double- or single-quoted attributes.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The short form of a sender in a subject: `alice` of `alice@hub.example`.
fn short(sender: &str) -> &str {
    sender.split('@').next().unwrap_or(sender)
}

/// Paragraphs to both parts: plain text as is, HTML escaped, links as anchors.
enum Block<'a> {
    Text(String),
    /// A value set apart (a code).
    Code(&'a str),
    Link(&'a str),
}

pub fn render(letter: &Letter, site: &Site) -> Rendered {
    let hub = site.hub_name;
    let (subject, blocks, why) = match letter {
        Letter::Confirm { code, link } => (
            format!("Confirm your e-mail address for AllPeers at {hub}"),
            vec![
                Block::Text(format!(
                    "Someone using AllPeers at {hub} asked to get notices at this address. \
                     To confirm, enter this code in AllPeers:"
                )),
                Block::Code(code),
                Block::Text("or open this link and press Confirm:".into()),
                Block::Link(link),
                Block::Text(
                    "If this was not you, ignore this mail: nothing more will be sent.".into(),
                ),
            ],
            "because someone entered this address in AllPeers",
        ),
        Letter::Shared { sender, title } => (
            format!("{} shared '{title}' with you", short(sender)),
            vec![
                Block::Text(format!("{sender} shared '{title}' with you on AllPeers.")),
                Block::Text("Open AllPeers to see it.".into()),
            ],
            "because you asked to be told about shares",
        ),
        Letter::Waiting { sender, count } => {
            let n = if *count == 1 {
                "1 message is".to_string()
            } else {
                format!("{count} messages are")
            };
            (
                format!("{n} waiting for you"),
                vec![
                    Block::Text(format!("{n} from {sender} waiting for you at {hub}.")),
                    Block::Text("Open AllPeers to read them.".into()),
                ],
                "because you asked to be told about waiting messages",
            )
        }
        Letter::Digest { count } => {
            let n = if *count == 1 {
                "1 message is".to_string()
            } else {
                format!("{count} messages are")
            };
            (
                format!("{n} waiting for you"),
                vec![
                    Block::Text(format!("{n} waiting for you at {hub}.")),
                    Block::Text("Open AllPeers to read them.".into()),
                ],
                "because you asked for a digest of waiting messages",
            )
        }
        Letter::Invite {
            sender,
            invite_code,
            note,
        } => (
            format!("{} invites you to AllPeers", short(sender)),
            [Block::Text(format!(
                "{sender} invites you to AllPeers, where people share files, chat and \
                 meet directly between their own devices."
            ))]
            .into_iter()
            .chain(
                note.iter()
                    .map(|n| Block::Text(format!("{} wrote: \"{n}\"", short(sender)))),
            )
            .chain([
                Block::Text(format!(
                    "Install AllPeers, then add this invite code (it also names {sender}'s \
                     hub, {hub}):"
                )),
                Block::Code(invite_code),
            ])
            .collect(),
            "because an AllPeers user entered this address",
        ),
    };
    let footer = format!("Sent by the AllPeers hub {hub} {why}. To get no more mail from it:");
    let mut text = String::new();
    let mut html =
        String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n");
    for block in &blocks {
        match block {
            Block::Text(t) => {
                text.push_str(t);
                html.push_str(&format!("<p>{}</p>\n", html_escape(t)));
            }
            Block::Code(c) => {
                text.push_str(&format!("    {c}"));
                html.push_str(&format!(
                    "<p><code style=\"word-break:break-all\">{}</code></p>\n",
                    html_escape(c)
                ));
            }
            Block::Link(l) => {
                text.push_str(l);
                let l = html_escape(l);
                html.push_str(&format!("<p><a href=\"{l}\">{l}</a></p>\n"));
            }
        }
        text.push_str("\n\n");
    }
    text.push_str(&format!("-- \n{footer}\n{}\n", site.unsubscribe_url));
    let u = html_escape(site.unsubscribe_url);
    html.push_str(&format!(
        "<hr><p style=\"font-size:small\">{} <a href=\"{u}\">{u}</a></p>\n</body></html>\n",
        html_escape(&footer)
    ));
    Rendered {
        subject,
        text,
        html,
    }
}

/// `List-Unsubscribe: <url>` (RFC 2369).
#[derive(Debug, Clone)]
pub struct ListUnsubscribe(pub String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(
            s.trim().trim_matches(['<', '>']).to_string(),
        ))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
pub struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".into())
    }
}

/// `Auto-Submitted: auto-generated` (RFC 3834): no auto-replies to these.
#[derive(Debug, Clone)]
pub struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// The headers a DKIM signature covers (each once in every mail).
pub const SIGNED_HEADERS: [&str; 7] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Builds the message: From the hub, To the address, multipart/alternative (plain, HTML),
/// the unsubscribe headers; signed when `dkim` is set.
pub fn compose(
    rendered: Rendered,
    from: &Mailbox,
    to: &str,
    message_id: String,
    unsubscribe_url: &str,
    dkim: Option<&lettre::message::dkim::DkimConfig>,
) -> Result<Message, lettre::error::Error> {
    let to: Mailbox = Mailbox::new(
        None,
        to.parse().map_err(|_| lettre::error::Error::MissingTo)?,
    );
    let mut message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(message_id))
        .header(ListUnsubscribe(unsubscribe_url.to_string()))
        .header(ListUnsubscribePost)
        .header(AutoSubmitted)
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))?;
    if let Some(dkim) = dkim {
        message.sign(dkim);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site<'static> {
        Site {
            hub_name: "hub.test",
            unsubscribe_url: "http://127.0.0.1:8025/u/TOKEN",
        }
    }

    #[test]
    fn escapes_every_field_in_html() {
        let letter = Letter::Shared {
            sender: "alice@hub.test".into(),
            title: "<script>alert('x')</script> & \"more\"".into(),
        };
        let r = render(&letter, &site());
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(
            r.html
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;")
        );
        // Plain text keeps the title as typed.
        assert!(r.text.contains("<script>alert('x')</script>"));
        assert_eq!(
            r.subject,
            "alice shared '<script>alert('x')</script> & \"more\"' with you"
        );
    }

    #[test]
    fn every_letter_has_both_parts_and_the_unsubscribe_link() {
        for letter in [
            Letter::Confirm {
                code: "K7Q2M9XD".into(),
                link: "http://h/c/x".into(),
            },
            Letter::Shared {
                sender: "alice@hub.test".into(),
                title: "Holiday 2026".into(),
            },
            Letter::Waiting {
                sender: "alice@hub.test".into(),
                count: 3,
            },
            Letter::Digest { count: 1 },
            Letter::Invite {
                sender: "alice@hub.test".into(),
                invite_code: "apinvite1abc".into(),
                note: None,
            },
        ] {
            let r = render(&letter, &site());
            assert!(r.text.contains(site().unsubscribe_url), "{letter:?}");
            assert!(r.html.contains(site().unsubscribe_url), "{letter:?}");
            assert!(!r.subject.contains('\n'));
        }
        let r = render(
            &Letter::Waiting {
                sender: "alice@hub.test".into(),
                count: 3,
            },
            &site(),
        );
        assert_eq!(r.subject, "3 messages are waiting for you");
        let r = render(
            &Letter::Invite {
                sender: "alice@hub.test".into(),
                invite_code: "apinvite1abc".into(),
                note: Some("Join <b>us</b>".into()),
            },
            &site(),
        );
        assert_eq!(r.subject, "alice invites you to AllPeers");
        assert!(r.text.contains("apinvite1abc") && r.text.contains("hub.test"));
        assert!(r.text.contains("alice wrote: \"Join <b>us</b>\""));
        assert!(r.html.contains("Join &lt;b&gt;us&lt;/b&gt;") && !r.html.contains("<b>"));
    }

    #[test]
    fn composes_multipart_alternative_with_headers() {
        let from: Mailbox = "AllPeers <noreply@hub.test>".parse().unwrap();
        let r = render(
            &Letter::Shared {
                sender: "alice@hub.test".into(),
                title: "Été 2026".into(),
            },
            &site(),
        );
        let m = compose(
            r,
            &from,
            "bob@example.org",
            "<x@hub.test>".into(),
            "http://h/u/T",
            None,
        )
        .unwrap();
        let text = String::from_utf8(m.formatted()).unwrap();
        assert!(
            text.contains("List-Unsubscribe: <http://h/u/T>\r\n"),
            "{text}"
        );
        assert!(text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("Message-ID: <x@hub.test>"));
        assert!(text.contains("From: AllPeers <noreply@hub.test>"));
    }
}
