//! Positions of items in a shared list: strings of decimal digits compared as fractions
//! (`"05"` is 0.05), so that a key strictly between any two others always exists and a move is
//! one op naming one item (a last-writer-wins register per item), whatever the list's length.
//!
//! An item nobody moved sits at its *arrival key*: made from the stamp of its add, so new items
//! append in the order they were added. A move to the end takes the arrival key of the moment
//! when that is later than the last item's, so items added afterwards still append after it.
//!
//! Keys made here never end in `'0'` (a key ending in `'0'` has no key right before it); a key a
//! peer made up (any string within the op's bounds) is still ordered, and when no key fits
//! between two of them [`between`] says so and the caller numbers the list afresh.

use crate::op::Stamp;

/// Digits a key may have: the bound on names in ops.
pub const MAX_POSITION_BYTES: usize = crate::op::MAX_NAME_BYTES;

/// The key of an item added at `stamp` and never moved.
pub fn arrival(stamp: Stamp) -> String {
    // Fixed width, so keys compare as the stamps do; the final 5 keeps room below the next one.
    format!("{:013}{:010}5", stamp.wall_ms, stamp.counter)
}

/// A key strictly after `before` and strictly before `after` (`None`: the list's start or end),
/// or `None` when there is none within [`MAX_POSITION_BYTES`] (then number the list afresh
/// with [`spread`]).
pub fn between(before: Option<&str>, after: Option<&str>) -> Option<String> {
    let a = before.unwrap_or("").as_bytes();
    let b = after.map(str::as_bytes);
    if let Some(b) = b
        && a >= b
    {
        return None;
    }
    let mut key = Vec::new();
    let mut i = 0;
    // Digit by digit: copy the common prefix, then pick a digit between (or extend `a`).
    loop {
        if i >= MAX_POSITION_BYTES {
            return None;
        }
        let da = a.get(i).map_or(0, |c| digit(*c));
        let db = match b {
            Some(b) => match b.get(i) {
                Some(c) => digit(*c),
                // `b` ended and `a` matched it so far: `a` would be >= `b`; unreachable for
                // a < b, but a made-up key could be shaped so: no key fits.
                None => return None,
            },
            None => 10,
        };
        if da == db {
            key.push(b'0' + da);
            i += 1;
            continue;
        }
        if db > da + 1 {
            key.push(b'0' + (da + db).div_ceil(2));
            break;
        }
        // Adjacent digits: keep `a`'s digit, then anything above the rest of `a`.
        key.push(b'0' + da);
        i += 1;
        let rest = a.get(i..).unwrap_or_default();
        let tail = between(std::str::from_utf8(rest).ok(), None)?;
        key.extend_from_slice(tail.as_bytes());
        break;
    }
    let key = String::from_utf8(key).expect("digits");
    let fits = key.len() <= MAX_POSITION_BYTES
        && key.as_bytes() > a
        && b.is_none_or(|b| key.as_bytes() < b);
    fits.then_some(key)
}

/// `n` keys in ascending order, evenly spread below every arrival key (they start with `'0'`,
/// arrival keys with the wall clock's first digit), for numbering a list afresh.
pub fn spread(n: usize) -> Vec<String> {
    let width = n.max(1).to_string().len() + 1;
    (1..=n).map(|i| format!("0{:0width$}5", i * 5)).collect()
}

/// A digit's value; anything else a peer wrote counts as 0.
fn digit(c: u8) -> u8 {
    if c.is_ascii_digit() { c - b'0' } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_fits_between_any_two_made_here() {
        let keys = [
            None,
            Some("05"),
            Some("1"),
            Some("15"),
            Some("151"),
            Some("2"),
            Some("5"),
            Some("99"),
            Some("995"),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in keys.iter().skip(i + 1).chain([&None]) {
                let k = between(*a, *b).unwrap_or_else(|| panic!("{a:?} {b:?}"));
                assert!(a.is_none_or(|a| k.as_str() > a), "{a:?} < {k} < {b:?}");
                assert!(b.is_none_or(|b| k.as_str() < b), "{a:?} < {k} < {b:?}");
                assert!(!k.ends_with('0'), "{k}");
            }
        }
    }

    #[test]
    fn repeated_inserts_at_one_place_grow_slowly_then_ask_for_a_spread() {
        // Always right after the first item: the worst case for key length.
        let first = arrival(Stamp {
            wall_ms: 1_764_590_000_000,
            counter: 0,
        });
        let last = arrival(Stamp {
            wall_ms: 1_764_590_000_001,
            counter: 0,
        });
        let mut next = last.clone();
        let mut made = 0;
        while let Some(k) = between(Some(&first), Some(&next)) {
            assert!(k > first && k < next);
            next = k;
            made += 1;
        }
        assert!(made > 100, "only {made} inserts before a spread");
        let fresh = spread(1000);
        assert!(fresh.windows(2).all(|w| w[0] < w[1]));
        assert!(
            fresh.last().unwrap() < &first,
            "spread keys sort before arrivals"
        );
        assert!(between(Some(&fresh[0]), Some(&fresh[1])).is_some());
    }

    #[test]
    fn arrival_keys_follow_the_stamps_and_the_end_is_open() {
        let k1 = arrival(Stamp {
            wall_ms: 999,
            counter: 7,
        });
        let k2 = arrival(Stamp {
            wall_ms: 1000,
            counter: 0,
        });
        assert!(k1 < k2);
        assert!(between(Some(&k2), None).unwrap() > k2);
        assert!(between(None, Some(&k1)).unwrap() < k1);
    }

    #[test]
    fn keys_a_peer_made_up_never_panic() {
        for (a, b) in [
            (Some("5"), Some("50")),
            (Some("9"), Some("5")),
            (Some("x"), Some("y")),
            (Some(""), Some("")),
            (None, Some("0")),
            (None, Some("")),
        ] {
            if let Some(k) = between(a, b) {
                assert!(a.is_none_or(|a| k.as_str() > a) && b.is_none_or(|b| k.as_str() < b));
            }
        }
        let long = "9".repeat(MAX_POSITION_BYTES);
        assert_eq!(between(Some(&long), None), None);
    }
}
