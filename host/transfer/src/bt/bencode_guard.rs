//! A pre-check run before librqbit-bencode sees untrusted bytes. Its integer parser (the `atoi` crate) overflows on
//! integers with more digits than fit in 64 bits: a panic wherever overflow checks are on (debug builds, fuzzing) and
//! a silently wrapped number elsewhere. Found by our fuzz targets. This walks the first bencoded value and refuses
//! over-long integers and lengths, and nesting deeper than [`MAX_DEPTH`], so such input becomes a typed error.

/// 18 decimal digits always fit in an `i64`.
pub const MAX_INT_DIGITS: usize = 18;
/// Deeper nesting than this is refused: torrents and extension messages nest a few levels at most.
pub const MAX_DEPTH: usize = 64;

/// Checks the bencoded value at the start of `buf` (bytes after it are not looked at).
pub fn check(buf: &[u8]) -> Result<(), &'static str> {
    let mut pos = 0;
    value(buf, &mut pos, 0)
}

fn digits(buf: &[u8], pos: &mut usize) -> Result<usize, &'static str> {
    let start = *pos;
    while buf.get(*pos).is_some_and(u8::is_ascii_digit) {
        *pos += 1;
    }
    match *pos - start {
        0 => Err("bencode: a number without digits"),
        n if n > MAX_INT_DIGITS => Err("bencode: a number with more than 18 digits"),
        n => Ok(n),
    }
}

fn value(buf: &[u8], pos: &mut usize, depth: usize) -> Result<(), &'static str> {
    if depth > MAX_DEPTH {
        return Err("bencode: nested too deep");
    }
    match buf.get(*pos) {
        Some(b'i') => {
            *pos += 1;
            if buf.get(*pos) == Some(&b'-') {
                *pos += 1;
            }
            digits(buf, pos)?;
            if buf.get(*pos) != Some(&b'e') {
                return Err("bencode: an integer without its end");
            }
            *pos += 1;
            Ok(())
        }
        Some(b'l' | b'd') => {
            *pos += 1;
            while buf.get(*pos) != Some(&b'e') {
                if *pos >= buf.len() {
                    return Err("bencode: a list or dictionary without its end");
                }
                value(buf, pos, depth + 1)?;
            }
            *pos += 1;
            Ok(())
        }
        Some(b'0'..=b'9') => {
            let start = *pos;
            digits(buf, pos)?;
            let len: usize = std::str::from_utf8(&buf[start..*pos])
                .expect("digits")
                .parse()
                .expect("18 digits fit");
            if buf.get(*pos) != Some(&b':') {
                return Err("bencode: a string length without ':'");
            }
            *pos += 1;
            if buf.len() - *pos < len {
                return Err("bencode: a string longer than the input");
            }
            *pos += len;
            Ok(())
        }
        _ => Err("bencode: not a value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_values_pass_and_trailing_bytes_are_ignored() {
        assert_eq!(check(b"d1:ai-42e1:bl3:xyzee"), Ok(()));
        assert_eq!(check(b"i999999999999999999eTRAILING"), Ok(()));
    }

    #[test]
    fn overflowing_numbers_deep_nesting_and_truncation_are_refused() {
        assert!(check(b"i1234567890123456789e").is_err());
        assert!(check(b"1234567890123456789:x").is_err());
        assert!(check(&[b'l'; 100]).is_err());
        assert!(check(b"d1:a").is_err());
        assert!(check(b"5:abc").is_err());
        assert!(check(b"ie").is_err());
        assert!(check(b"").is_err());
    }
}
