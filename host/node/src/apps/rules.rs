//! The apps area's rules, pure: which origins an app session may name, an app's type
//! namespace, which types a schema, a query or a subscription may touch, and scope sets.

use allpeers_model::api::apps::Scope;
use allpeers_model::api::contract::app_topic_scope;
use allpeers_model::query::{Expr, Query};
pub use allpeers_model::schema::app::{check_schema_types, in_namespace, namespace};

/// Longest origin accepted.
pub const MAX_ORIGIN: usize = 200;
/// Longest name of an app's schema file (before the namespace is put in front).
const MAX_SCHEMA_FILE: usize = 64;

/// Why an origin was refused (shown to the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad origin: {0}")]
pub struct BadOrigin(pub &'static str);

/// Checks an origin as `hello` names it: `https://host[:port]`, a loopback `http` origin, or
/// an extension's (`chrome-extension://<32 a-p>`, `moz-extension://<uuid>`); lowercase, no
/// path, no default port, at most [`MAX_ORIGIN`] characters. Returns it unchanged: the
/// browser already gives the serialised form, and two spellings of one origin would be two
/// apps.
pub fn check_origin(origin: &str) -> Result<&str, BadOrigin> {
    if origin.is_empty() || origin.len() > MAX_ORIGIN {
        return Err(BadOrigin("empty, or over 200 characters"));
    }
    if !origin.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BadOrigin("only printable ASCII without spaces"));
    }
    if origin.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(BadOrigin("an origin is lowercase"));
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(BadOrigin(
            "not scheme://host (an opaque origin such as \"null\" is never an app)",
        ));
    };
    match scheme {
        "https" => {
            let host = host_and_port(rest, "443")?;
            if !(is_dns_name(host) || is_ipv4(host) || is_bracketed_ipv6(host)) {
                return Err(BadOrigin("not a host name or an IP address"));
            }
        }
        "http" => {
            let host = host_and_port(rest, "80")?;
            if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
                return Err(BadOrigin(
                    "http only for localhost, 127.0.0.1 and [::1]: use https",
                ));
            }
        }
        "chrome-extension" => {
            if rest.len() != 32 || !rest.bytes().all(|b| (b'a'..=b'p').contains(&b)) {
                return Err(BadOrigin("a Chromium extension id is 32 letters a-p"));
            }
        }
        "moz-extension" => {
            if !is_uuid(rest) {
                return Err(BadOrigin("a Firefox extension origin is a UUID"));
            }
        }
        _ => {
            return Err(BadOrigin(
                "the scheme must be https, http (loopback), chrome-extension or moz-extension",
            ));
        }
    }
    Ok(origin)
}

/// `host[:port]` with no path, user or query; the port a number 1-65535 other than the
/// scheme's default, without leading zeros. Answers the host.
fn host_and_port<'a>(rest: &'a str, default_port: &str) -> Result<&'a str, BadOrigin> {
    if rest.contains(['/', '?', '#', '@', '\\']) {
        return Err(BadOrigin("an origin has no path, query, fragment or user"));
    }
    // A bracketed IPv6 host holds colons of its own.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if host.is_empty() {
        return Err(BadOrigin("no host"));
    }
    if let Some(port) = port {
        let number = port
            .parse::<u16>()
            .ok()
            .filter(|&n| n > 0 && !port.starts_with('0'))
            .ok_or(BadOrigin("the port is a number 1-65535"))?;
        if number.to_string() == default_port {
            return Err(BadOrigin("the default port is left out of an origin"));
        }
    }
    Ok(host)
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && !host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn is_ipv4(host: &str) -> bool {
    host.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.to_string() == host)
}

fn is_bracketed_ipv6(host: &str) -> bool {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok().map(|ip| (h, ip)))
        .is_some_and(|(h, ip)| ip.to_string() == h)
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| {
            g.len() == n
                && g.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The store's file name for an app's schema file `file` (default `schema`).
pub fn schema_file(namespace: &str, file: Option<&str>) -> Result<String, String> {
    let file = file.unwrap_or("schema");
    let ok = !file.is_empty()
        && file.len() <= MAX_SCHEMA_FILE
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(format!(
            "a schema file's name is 1-{MAX_SCHEMA_FILE} letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(format!("{namespace}{file}"))
}

/// An id an app gives a new resource: none (the store chooses one), or one in its namespace.
/// Any other id could collide with an existing resource, and the refusal would tell the app
/// that resource exists.
pub fn check_new_id(namespace: &str, id: &str) -> Result<(), String> {
    if id.is_empty() || in_namespace(namespace, id) {
        Ok(())
    } else {
        Err(format!(
            "an app's new resource has no id (one is chosen) or one starting with {namespace}"
        ))
    }
}

/// Every type a query names: its own, and those of `isA` and list sub-queries, however nested.
pub fn query_types(query: &Query) -> Vec<&str> {
    fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
        match e {
            Expr::Any(v) | Expr::All(v) => v.iter().for_each(|x| walk(x, out)),
            Expr::Not(x) => walk(x, out),
            Expr::IsA(t) => out.push(t),
            Expr::ListsContaining(q) | Expr::ItemsOf(q) => out.extend(query_types(q)),
            Expr::Prop(_) | Expr::Meta(_) | Expr::Ids(_) => {}
        }
    }
    let mut out = vec![query.type_name.as_str()];
    for e in &query.filter {
        walk(e, &mut out);
    }
    out
}

/// The first type a query names outside the namespace, if any.
pub fn foreign_query_type<'a>(namespace: &str, query: &'a Query) -> Option<&'a str> {
    query_types(query)
        .into_iter()
        .find(|t| !in_namespace(namespace, t))
}

/// The scope `needed` if `granted` lacks it.
pub fn missing_scope(granted: &[Scope], needed: Option<Scope>) -> Option<Scope> {
    needed.filter(|s| !granted.contains(s))
}

/// `granted` with `added`: sorted, each once.
pub fn with_scopes(granted: &[Scope], added: &[Scope]) -> Vec<Scope> {
    let mut all: Vec<Scope> = granted.iter().chain(added).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// `granted` without `removed`.
pub fn without_scopes(granted: &[Scope], removed: &[Scope]) -> Vec<Scope> {
    granted
        .iter()
        .filter(|s| !removed.contains(s))
        .copied()
        .collect()
}

/// Scopes as stored: wire names, comma-separated.
pub fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Scopes from their stored form; a name this build does not know is dropped (never
/// granted by mistake).
pub fn parse_scopes_text(text: &str) -> Vec<Scope> {
    let parsed: Vec<Scope> = text.split(',').filter_map(Scope::parse).collect();
    with_scopes(&parsed, &[])
}

/// The topics an app session may subscribe to with `events.subscribe` (resource events come
/// through `resources.subscribe`), and the scope each needs.
pub fn subscribable_topic(topic: &str) -> Option<Scope> {
    use allpeers_model::api::methods::topics as t;
    use allpeers_model::api::shares::topics as sh;
    [t::PRESENCE_CHANGED, t::CONTACT_CHANGED, sh::SHARE_CHANGED]
        .contains(&topic)
        .then(|| app_topic_scope(topic))
        .flatten()
}

/// Whether an event of `topic` may reach an app session whose origin holds `granted` now.
pub fn may_deliver(topic: &str, granted: &[Scope]) -> bool {
    app_topic_scope(topic).is_some_and(|scope| granted.contains(&scope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_model::query::Op;

    #[test]
    fn good_origins_pass_unchanged() {
        for origin in [
            "https://example.com",
            "https://sub.example.co.uk:8443",
            "https://xn--bcher-kva.example",
            "https://192.0.2.1",
            "https://[2001:db8::1]:8443",
            "http://localhost",
            "http://localhost:8080",
            "http://127.0.0.1:5173",
            "http://[::1]:3000",
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop",
            "moz-extension://0b5e2c7a-1d3f-4e6a-9b8c-7d6e5f4a3b2c",
        ] {
            assert_eq!(check_origin(origin), Ok(origin), "{origin}");
        }
    }

    #[test]
    fn bad_origins_are_refused() {
        let long = format!("https://{}.example", "a".repeat(200));
        for origin in [
            "",
            "null",
            "example.com",
            "https://",
            "https://Example.com",
            "HTTPS://example.com",
            "https://example.com/",
            "https://example.com/path",
            "https://example.com?q",
            "https://example.com#f",
            "https://user@example.com",
            "https://example.com:443",
            "https://example.com:0",
            "https://example.com:080",
            "https://example.com:65536",
            "https://example.com:",
            "https://exa mple.com",
            "https://-bad.example",
            "https://bad-.example",
            "https://a..example",
            "https://999.1.1.1",
            "https://[::1",
            "https://[not:ipv6]",
            "http://example.com",
            "http://localhost:80",
            "http://127.0.0.2",
            "file:///etc/passwd",
            "data://x",
            "ftp://example.com",
            "chrome-extension://abc",
            "chrome-extension://abcdefghijklmnopabcdefghijklmnoz",
            "moz-extension://not-a-uuid",
            "moz-extension://0b5e2c7a-1d3f-4e6a-9b8c-7d6e5f4a3b2",
            "https://ex\u{e4}mple.com",
            &long,
        ] {
            assert!(check_origin(origin).is_err(), "{origin} was accepted");
        }
    }

    #[test]
    fn schema_files_are_put_in_the_namespace() {
        let ns = namespace("https://a.example");
        assert_eq!(schema_file(&ns, None).unwrap(), format!("{ns}schema"));
        assert_eq!(
            schema_file(&ns, Some("todo.v1")).unwrap(),
            format!("{ns}todo.v1")
        );
        assert!(schema_file(&ns, Some("")).is_err());
        assert!(schema_file(&ns, Some("../x")).is_err());
        assert!(schema_file(&ns, Some(&"x".repeat(65))).is_err());
    }

    #[test]
    fn new_ids_are_chosen_or_namespaced() {
        let ns = namespace("https://a.example");
        assert!(check_new_id(&ns, "").is_ok());
        assert!(check_new_id(&ns, &format!("{ns}todo-1")).is_ok());
        assert!(check_new_id(&ns, "peer:ap123").is_err());
        assert!(check_new_id(&ns, &format!("{}x", namespace("https://b.example"))).is_err());
    }

    #[test]
    fn every_type_a_query_names_is_found() {
        let ns = namespace("https://a.example");
        let todo = format!("{ns}Todo");
        let mine = Query::of(&todo).where_prop("done", Op::Eq, false);
        assert_eq!(query_types(&mine), vec![todo.as_str()]);
        assert_eq!(foreign_query_type(&ns, &mine), None);
        assert_eq!(
            foreign_query_type(&ns, &Query::of("Resource")),
            Some("Resource")
        );
        let nested =
            Query::of(&todo).or(vec![Expr::Not(Box::new(Expr::All(vec![Expr::ItemsOf(
                Box::new(Query::of("List")),
            )])))]);
        assert_eq!(foreign_query_type(&ns, &nested), Some("List"));
        let is_a = Query::of(&todo).and(Expr::Any(vec![Expr::IsA("Message".into())]));
        assert_eq!(foreign_query_type(&ns, &is_a), Some("Message"));
        let lists = Query::of(&todo).and(Expr::ListsContaining(Box::new(Query::of(&todo))));
        assert_eq!(query_types(&lists), vec![todo.as_str(), todo.as_str()]);
        assert_eq!(foreign_query_type(&ns, &lists), None);
    }

    #[test]
    fn scope_sets() {
        use Scope::*;
        assert_eq!(missing_scope(&[Identity], Some(Resources)), Some(Resources));
        assert_eq!(missing_scope(&[Identity], Some(Identity)), None);
        assert_eq!(missing_scope(&[], None), None);
        let granted = with_scopes(&[Shares, Identity], &[Identity, Resources]);
        assert_eq!(granted, vec![Identity, Resources, Shares]);
        assert_eq!(
            without_scopes(&granted, &[Resources, Presence]),
            vec![Identity, Shares]
        );
        assert_eq!(scopes_text(&granted), "identity,resources,shares");
        assert_eq!(
            parse_scopes_text("shares,identity,future:thing,identity"),
            vec![Identity, Shares]
        );
        assert_eq!(parse_scopes_text(""), vec![]);
    }

    #[test]
    fn topics_follow_their_scopes() {
        use Scope::*;
        assert_eq!(subscribable_topic("presence.changed"), Some(Presence));
        assert_eq!(subscribable_topic("contact.changed"), Some(ContactsRead));
        assert_eq!(subscribable_topic("share.changed"), Some(Shares));
        assert_eq!(subscribable_topic("resource.changed"), None);
        assert_eq!(subscribable_topic("message.received"), None);
        assert_eq!(subscribable_topic("apps.changed"), None);
        assert!(may_deliver("resource.changed", &[Resources]));
        assert!(!may_deliver("resource.changed", &[Identity]));
        assert!(!may_deliver("message.received", Scope::ALL));
        assert!(may_deliver("presence.changed", &[Presence]));
        assert!(!may_deliver("presence.changed", &[]));
    }
}
