//! The name policy for `name@hub` registrations.
//!
//! A name is 1 to 32 characters after case folding: ASCII letters (folded to lowercase),
//! digits, `-`, `_` and `.`; it starts with a letter or digit and does not end with `-`, `_`
//! or `.`. No other characters (no Unicode: it keeps look-alike names out and the policy
//! simple to state). Names are compared after folding, so `Alice` and `alice` are one name.
//! A hub's own name (after the `@`) is a DNS-style host name: letters, digits, `-`, `.`,
//! at most 253 characters.

pub const NAME_MAX_LEN: usize = 32;
pub const HUB_NAME_MAX_LEN: usize = 253;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name is 1 to {NAME_MAX_LEN} characters")]
    Length,
    #[error(
        "{0:?} is not allowed in a name (letters a-z, digits, '-', '_', '.'; starting with a letter or digit)"
    )]
    Character(char),
    #[error("a name may not end with '-', '_' or '.'")]
    Ending,
    #[error("{0:?} is not a hub name (letters, digits, '-', '.')")]
    HubName(String),
}

/// Folds and checks a local name (`Alice` -> `alice`).
pub fn fold_name(name: &str) -> Result<String, NameError> {
    if name.is_empty() || name.chars().count() > NAME_MAX_LEN {
        return Err(NameError::Length);
    }
    let mut out = String::with_capacity(name.len());
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '-' | '_' | '.'));
        if !ok {
            return Err(NameError::Character(c));
        }
        out.push(c.to_ascii_lowercase());
    }
    if out.ends_with(['-', '_', '.']) {
        return Err(NameError::Ending);
    }
    Ok(out)
}

/// Folds and checks a hub name.
pub fn fold_hub_name(hub: &str) -> Result<String, NameError> {
    let ok = !hub.is_empty()
        && hub.len() <= HUB_NAME_MAX_LEN
        && hub
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        && !hub.starts_with(['-', '.'])
        && !hub.ends_with(['-', '.']);
    if ok {
        Ok(hub.to_ascii_lowercase())
    } else {
        Err(NameError::HubName(hub.chars().take(64).collect()))
    }
}

/// Splits `name@hub` (or a bare `name`) into folded parts.
pub fn parse_full_name(text: &str) -> Result<(String, Option<String>), NameError> {
    match text.split_once('@') {
        Some((name, hub)) => Ok((fold_name(name)?, Some(fold_hub_name(hub)?))),
        None => Ok((fold_name(text)?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert_eq!(fold_name("Alice").unwrap(), "alice");
        assert_eq!(fold_name("bob.smith-2_x").unwrap(), "bob.smith-2_x");
        assert_eq!(fold_name(""), Err(NameError::Length));
        assert_eq!(fold_name(&"a".repeat(33)), Err(NameError::Length));
        assert_eq!(fold_name("-bob"), Err(NameError::Character('-')));
        assert_eq!(fold_name("bob-"), Err(NameError::Ending));
        assert_eq!(fold_name("bøb"), Err(NameError::Character('ø')));
        assert_eq!(fold_name("a b"), Err(NameError::Character(' ')));
        assert_eq!(
            parse_full_name("Alice@Hub.Example").unwrap(),
            ("alice".into(), Some("hub.example".into()))
        );
        assert!(parse_full_name("alice@").is_err());
    }
}
