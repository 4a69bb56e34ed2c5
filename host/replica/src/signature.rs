//! Ed25519 verification of op signatures, one at a time or many in one equation, with the same
//! verdict either way.
//!
//! A signature `(R, s)` by key `A` on message `M` holds when `s` is a canonical scalar, `R` is a
//! canonically encoded point, neither `A` nor `R` is of small order, and
//! `[8](s·B − h·A − R) = 0` with `h = SHA-512(R ‖ A ‖ M)`: RFC 8032's cofactored equation with
//! `verify_strict`'s checks on the encodings. Checked many at once, the equations are summed
//! with 128-bit weights (`[8]·Σ zᵢ(sᵢ·B − hᵢ·Aᵢ − Rᵢ) = 0`, one multi-scalar multiplication,
//! each key's terms merged: a share's ops come from a few authors), which holds exactly when
//! every one holds (but with probability 2⁻¹²⁸: the weights are a hash of everything checked, so
//! a forger cannot aim at them). When a batch fails, its signatures are checked one by one and
//! only the bad ones are refused.
//!
//! Why not ed25519-dalek's `verify_strict` and `verify_batch`: validity must not depend on how
//! ops arrived (alone, or among others in a frame), or replicas diverge. `verify_strict` is
//! cofactorless, `verify_batch` sums cofactorless equations with weights that depend on the
//! whole batch: a signature whose `R` carries a small-order component (only its key's holder
//! can make one) fails alone and passes in one batch in eight. The cofactored equation gives
//! the same answer alone and in any batch (the ZIP-215 reasoning). Such a signature is the
//! only one whose verdict changed from `verify_strict`'s; every honest signature holds both ways.

use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

/// Signatures summed into one equation at most. Bigger batches cost less each (the
/// multi-scalar multiplication is sub-linear), but a forged signature makes its whole batch
/// be checked again one by one: this bounds what one forgery costs.
pub const BATCH: usize = 128;

/// One signature to check.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub key: &'a [u8; 32],
    pub message: &'a [u8],
    pub signature: &'a [u8; 64],
}

/// Why a signature does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key is not a point of the curve, or is of small order.
    Key,
    /// The signature is malformed or does not hold.
    Signature,
}

/// Keys already decompressed (a key is checked once however many signatures it made).
#[derive(Default)]
pub struct Keys(HashMap<[u8; 32], Option<EdwardsPoint>>);

impl Keys {
    fn point(&mut self, key: &[u8; 32]) -> Option<EdwardsPoint> {
        *self.0.entry(*key).or_insert_with(|| {
            CompressedEdwardsY(*key)
                .decompress()
                .filter(|a| !a.is_small_order())
        })
    }
}

/// A signature whose encodings passed: what its equation needs.
#[derive(Clone, Copy)]
struct Parsed<'a> {
    key: &'a [u8; 32],
    r_bytes: [u8; 32],
    a: EdwardsPoint,
    r: EdwardsPoint,
    s: Scalar,
    h: Scalar,
}

impl Parsed<'_> {
    fn holds(&self) -> bool {
        // s·B − h·A, then minus R, times the cofactor.
        let expected =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&self.h, &-self.a, &self.s);
        (expected - self.r).mul_by_cofactor().is_identity()
    }
}

fn parse<'a>(signed: &Signed<'a>, keys: &mut Keys) -> Result<Parsed<'a>, Refusal> {
    let a = keys.point(signed.key).ok_or(Refusal::Key)?;
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&signed.signature[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signed.signature[32..]);
    let s =
        Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(Refusal::Signature)?;
    if !canonical_y(&r_bytes) {
        return Err(Refusal::Signature);
    }
    let r = CompressedEdwardsY(r_bytes)
        .decompress()
        .filter(|r| !r.is_small_order())
        .ok_or(Refusal::Signature)?;
    let mut hash = Sha512::new();
    hash.update(r_bytes);
    hash.update(signed.key);
    hash.update(signed.message);
    let h = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    Ok(Parsed {
        key: signed.key,
        r_bytes,
        a,
        r,
        s,
        h,
    })
}

/// Whether a point's `y` is below the field's prime 2²⁵⁵ − 19 (one encoding per point; the
/// sign bit of `x = 0` is the other non-canonical case, and both such points are of small
/// order, refused anyway).
fn canonical_y(bytes: &[u8; 32]) -> bool {
    bytes[31] & 0x7f != 0x7f || bytes[1..31].iter().any(|b| *b != 0xff) || bytes[0] < 0xed
}

/// Whether every one of `parsed` holds, in one equation.
fn all_hold(parsed: &[Parsed]) -> bool {
    if let [one] = parsed {
        return one.holds();
    }
    let mut transcript = blake3::Hasher::new_derive_key("allpeers replica batch verification v1");
    for p in parsed {
        transcript.update(p.key);
        transcript.update(&p.r_bytes);
        transcript.update(p.s.as_bytes());
        transcript.update(p.h.as_bytes());
    }
    let mut weights = transcript.finalize_xof();
    let mut scalars = Vec::with_capacity(parsed.len() + 8);
    let mut points = Vec::with_capacity(parsed.len() + 8);
    let mut basepoint = Scalar::ZERO;
    let mut per_key: HashMap<&[u8; 32], (EdwardsPoint, Scalar)> = HashMap::new();
    for p in parsed {
        let mut z = [0u8; 16];
        weights.fill(&mut z);
        let z = Scalar::from(u128::from_le_bytes(z));
        basepoint += z * p.s;
        scalars.push(-z);
        points.push(p.r);
        per_key.entry(p.key).or_insert((p.a, Scalar::ZERO)).1 -= z * p.h;
    }
    scalars.push(basepoint);
    points.push(ED25519_BASEPOINT_POINT);
    for (a, c) in per_key.into_values() {
        scalars.push(c);
        points.push(a);
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// The verdict on each of `signed`, the same as checking each alone: [`BATCH`] at a time in
/// one equation, a failed batch again one by one.
pub fn verify_all(signed: &[Signed], keys: &mut Keys) -> Vec<Result<(), Refusal>> {
    let mut verdicts = Vec::with_capacity(signed.len());
    for batch in signed.chunks(BATCH) {
        let parsed: Vec<Result<Parsed, Refusal>> = batch.iter().map(|s| parse(s, keys)).collect();
        let good: Vec<Parsed> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().copied())
            .collect();
        let together = all_hold(&good);
        verdicts.extend(parsed.iter().map(|p| match p {
            Err(refusal) => Err(*refusal),
            Ok(p) if together || p.holds() => Ok(()),
            Ok(_) => Err(Refusal::Signature),
        }));
    }
    verdicts
}

/// One signature's verdict.
pub fn verify(signed: &Signed) -> Result<(), Refusal> {
    verify_all(std::slice::from_ref(signed), &mut Keys::default())
        .pop()
        .expect("one verdict")
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    struct Owned {
        key: [u8; 32],
        message: Vec<u8>,
        signature: [u8; 64],
    }

    impl Owned {
        fn signed(&self) -> Signed<'_> {
            Signed {
                key: &self.key,
                message: &self.message,
                signature: &self.signature,
            }
        }
    }

    fn honest(n: usize) -> Vec<Owned> {
        (0..n)
            .map(|i| {
                let key = SigningKey::from_bytes(&[(i % 3) as u8 + 1; 32]);
                let message = format!("op {i}").into_bytes();
                Owned {
                    key: key.verifying_key().to_bytes(),
                    signature: key.sign(&message).to_bytes(),
                    message,
                }
            })
            .collect()
    }

    fn verdicts(owned: &[Owned]) -> Vec<Result<(), Refusal>> {
        let signed: Vec<Signed> = owned.iter().map(Owned::signed).collect();
        verify_all(&signed, &mut Keys::default())
    }

    /// A signature by `key`'s holder whose `R` has a small-order component: `verify_strict`
    /// refuses it, and `verify_batch` would pass it in some batches and not others.
    fn with_torsion(key: &SigningKey, message: &[u8]) -> [u8; 64] {
        let torsion = CompressedEdwardsY([0; 32])
            .decompress()
            .expect("a point of order 4");
        assert!(torsion.is_small_order() && !torsion.is_identity());
        let r = Scalar::from(0x1234_5678_u64);
        let big_r = (EdwardsPoint::mul_base(&r) + torsion).compress();
        let mut hash = Sha512::new();
        hash.update(big_r.as_bytes());
        hash.update(key.verifying_key().as_bytes());
        hash.update(message);
        let h = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
        let s = r + h * key.to_scalar();
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(big_r.as_bytes());
        signature[32..].copy_from_slice(s.as_bytes());
        signature
    }

    #[test]
    fn honest_signatures_hold_alone_and_together_and_tampered_ones_do_not() {
        let mut owned = honest(3 * BATCH + 7);
        assert!(verdicts(&owned).iter().all(Result::is_ok));
        for o in &owned {
            assert_eq!(verify(&o.signed()), Ok(()));
        }
        owned[5].message.push(b'!');
        owned[200].signature[40] ^= 1;
        let key = SigningKey::from_bytes(&[9; 32]);
        owned[300].signature = key.sign(&owned[300].message).to_bytes();
        let refused: Vec<usize> = verdicts(&owned)
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(refused, vec![5, 200, 300]);
        for i in [5, 200, 300] {
            assert_eq!(verify(&owned[i].signed()), Err(Refusal::Signature));
        }
    }

    #[test]
    fn a_small_order_component_gets_one_verdict_alone_and_in_any_batch() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let message = b"crafted".to_vec();
        let signature = with_torsion(&key, &message);
        let strict = key
            .verifying_key()
            .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&signature));
        assert!(strict.is_err(), "verify_strict refuses it");
        let crafted = Owned {
            key: key.verifying_key().to_bytes(),
            message,
            signature,
        };
        assert_eq!(verify(&crafted.signed()), Ok(()));
        // Among honest ones, at every place of batches of every size: the same verdict.
        for size in [2, 3, 8, 33] {
            for at in 0..size {
                let mut owned = honest(size - 1);
                owned.insert(
                    at,
                    Owned {
                        key: crafted.key,
                        message: crafted.message.clone(),
                        signature: crafted.signature,
                    },
                );
                assert!(verdicts(&owned).iter().all(Result::is_ok), "{size} {at}");
            }
        }
    }

    #[test]
    fn bad_encodings_and_small_order_keys_are_refused() {
        let owned = honest(1).pop().unwrap();
        // s + ℓ: the same scalar, not canonical.
        let mut s = [0u8; 32];
        s.copy_from_slice(&owned.signature[32..]);
        let l = Scalar::ZERO - Scalar::ONE; // ℓ − 1
        let mut wide = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(s[i]) + u16::from(l.as_bytes()[i]) + carry + u16::from(i == 0);
            wide[i] = sum as u8;
            carry = sum >> 8;
        }
        let mut non_canonical = owned.signature;
        non_canonical[32..].copy_from_slice(&wide);
        let bad_s = Owned {
            signature: non_canonical,
            ..owned
        };
        assert_eq!(verify(&bad_s.signed()), Err(Refusal::Signature));
        // A small-order key (the identity) with a signature that would hold for any message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = Owned {
            key: identity,
            message: b"anything".to_vec(),
            signature: {
                let mut sig = [0u8; 64];
                sig[0] = 1;
                sig
            },
        };
        assert_eq!(verify(&weak.signed()), Err(Refusal::Key));
        // y = p (non-canonical encoding) as R.
        let mut y_is_p = [0xff; 32];
        y_is_p[0] = 0xed;
        y_is_p[31] = 0x7f;
        assert!(!canonical_y(&y_is_p));
        y_is_p[0] = 0xec;
        assert!(canonical_y(&y_is_p));
    }
}
