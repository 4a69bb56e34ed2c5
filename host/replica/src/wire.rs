//! Bounded byte reader and writer shared by the op codec and the reconciliation codec.
//!
//! Integers are fixed-width big-endian or LEB128-style varints (7 bits a byte, most significant
//! group first, as negentropy writes them). Every read checks the bytes left first, so a
//! malformed input yields a [`WireError`], never a panic or an allocation sized by the input.

/// A varint of a `u64` takes at most this many bytes (64 bits / 7 bits a byte, rounded up).
pub const MAX_VARINT_BYTES: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("input ends {needed} bytes early")]
    Truncated { needed: usize },
    #[error("varint longer than {MAX_VARINT_BYTES} bytes or above u64::MAX")]
    VarintOverflow,
    /// Leading zero groups: the same number has one encoding, so the same op has one id.
    #[error("varint with leading zero groups")]
    VarintNotMinimal,
    #[error("{what}: {got} is above the limit of {limit}")]
    TooLarge {
        what: &'static str,
        got: u64,
        limit: u64,
    },
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("{0} bytes left over after the end of the message")]
    Trailing(usize),
}

pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated {
                needed: n - self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..MAX_VARINT_BYTES {
            let byte = self.u8()?;
            if i == 0 && byte == 0x80 {
                return Err(WireError::VarintNotMinimal);
            }
            if value > (u64::MAX >> 7) {
                return Err(WireError::VarintOverflow);
            }
            value = (value << 7) | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            if i + 1 == MAX_VARINT_BYTES {
                break;
            }
        }
        Err(WireError::VarintOverflow)
    }

    /// A varint that must not exceed `limit` (`what` names it in the error).
    pub fn bounded(&mut self, what: &'static str, limit: u64) -> Result<u64, WireError> {
        let got = self.varint()?;
        if got > limit {
            return Err(WireError::TooLarge { what, got, limit });
        }
        Ok(got)
    }

    /// A length-prefixed byte string of at most `limit` bytes.
    pub fn blob(&mut self, what: &'static str, limit: usize) -> Result<&'a [u8], WireError> {
        let len = self.bounded(what, limit as u64)? as usize;
        self.bytes(len)
    }

    pub fn string(&mut self, what: &'static str, limit: usize) -> Result<String, WireError> {
        let raw = self.blob(what, limit)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| WireError::Utf8(what))
    }

    pub fn finish(&self) -> Result<(), WireError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(WireError::Trailing(n)),
        }
    }
}

#[derive(Default)]
pub struct Writer {
    pub out: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.out.extend_from_slice(v);
    }
    pub fn varint(&mut self, v: u64) {
        put_varint(&mut self.out, v);
    }
    pub fn blob(&mut self, v: &[u8]) {
        self.varint(v.len() as u64);
        self.bytes(v);
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    let mut groups = [0u8; MAX_VARINT_BYTES];
    let mut n = 0;
    loop {
        groups[n] = (v & 0x7f) as u8;
        n += 1;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        out.push(groups[i] | if i > 0 { 0x80 } else { 0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges_and_overflow_is_refused() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX >> 1, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.varint().unwrap(), v);
            r.finish().unwrap();
        }
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(WireError::VarintOverflow)
        );
        assert_eq!(
            Reader::new(&[0x81]).varint(),
            Err(WireError::Truncated { needed: 1 })
        );
        // 5 with leading zero groups (found by fuzzing: the op decoded, and re-encoded to other bytes than its id's).
        for padded in [&[0x80, 0x05][..], &[0x80, 0x80, 0x80, 0x05], &[0x80, 0x00]] {
            assert_eq!(
                Reader::new(padded).varint(),
                Err(WireError::VarintNotMinimal)
            );
        }
        // 2^64 (one past u64::MAX) in ten bytes.
        let too_big = [0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(
            Reader::new(&too_big).varint(),
            Err(WireError::VarintOverflow)
        );
    }

    #[test]
    fn a_length_above_its_limit_is_refused_before_reading() {
        let mut w = Writer::default();
        w.varint(1 << 40);
        assert!(matches!(
            Reader::new(&w.out).blob("name", 64),
            Err(WireError::TooLarge { what: "name", .. })
        ));
    }
}
