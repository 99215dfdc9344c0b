//! Multi-scalar multiplication: signed-digit windows, buckets filled with
//! batch-affine additions, and the two ways the prover sums them: over the bases
//! as they are (variable base, one set of buckets per window), or over a
//! precomputed table of each base's window multiples (fixed base, one set of
//! buckets for all windows, see [`super::tables`]).
//!
//! The generic functions here are private to the crate, so they are compiled
//! (and optimised) in `zk` whoever calls the prover.

use ark_ec::short_weierstrass::{Affine, Bucket, Projective, SWCurveConfig};
use ark_ec::{AdditiveGroup, AffineRepr};
use ark_ff::{BigInt, BigInteger, PrimeField, Zero};
use rayon::prelude::*;

use super::batch_affine::Buckets;

/// A scalar in canonical (not Montgomery) form, as the digits are cut from it.
pub(crate) type Scalar = BigInt<4>;

/// Bits of the scalars' magnitudes after the negation trick (`s` or `r - s`,
/// whichever is smaller): BN254's `r` is below 2^254, so both halves are below
/// 2^253.
pub(crate) const SCALAR_BITS: u32 = 253;

/// Windows of `c` bits that hold the signed digits of a `bits`-bit magnitude:
/// recentering can carry one bit past the top.
pub(crate) fn windows(bits: u32, c: u32) -> usize {
    (bits + 1).div_ceil(c) as usize
}

/// Where a digit table keeps scalar `i`'s window `j`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `codes[i * windows + j]`: the order of a fixed-base table's entries.
    PointMajor,
    /// `codes[j * n + i]`: one window's digits side by side, for the
    /// variable-base sum, which runs window by window.
    WindowMajor,
}

/// Signed `c`-bit digits of a list of scalars. A code is 0 for a zero digit,
/// otherwise `magnitude << 1 | negative`, with magnitude in `1..=2^(c-1)`: it
/// selects bucket `magnitude - 1` and whether the point is added or subtracted.
pub(crate) struct Digits {
    pub c: u32,
    /// Windows per scalar (per half, for GLV digits).
    pub windows: usize,
    pub n: usize,
    pub layout: Layout,
    /// GLV digits: point-major, each scalar's `k1` windows then its `k2` windows.
    pub glv: bool,
    pub codes: Vec<u32>,
}

impl Digits {
    /// The digits of `scalars` (each below `r`) in windows of `c` bits.
    pub fn new(scalars: &[Scalar], c: u32, layout: Layout) -> Self {
        assert!((2..=24).contains(&c), "window of {c} bits");
        let windows = windows(SCALAR_BITS, c);
        let n = scalars.len();
        let mut codes = vec![0u32; n * windows];
        const CHUNK: usize = 1024;
        match layout {
            Layout::PointMajor => {
                codes
                    .par_chunks_mut(CHUNK * windows)
                    .zip(scalars.par_chunks(CHUNK))
                    .for_each(|(out, s)| {
                        for (o, s) in out.chunks_mut(windows).zip(s) {
                            signed_digits(s, c, o);
                        }
                    });
            }
            Layout::WindowMajor => {
                // Cut point-major (each scalar's carries run through its windows),
                // then transpose window by window.
                let rows = Digits::new(scalars, c, Layout::PointMajor).codes;
                codes
                    .par_chunks_mut(n.max(1))
                    .enumerate()
                    .for_each(|(j, out)| {
                        for (i, o) in out.iter_mut().enumerate() {
                            *o = rows[i * windows + j];
                        }
                    });
            }
        }
        Digits {
            c,
            windows,
            n,
            layout,
            glv: false,
            codes,
        }
    }

    /// Point-major digits of the GLV halves of `scalars` (see [`super::glv`]).
    pub fn new_glv(scalars: &[Scalar], c: u32) -> Self {
        assert!((2..=24).contains(&c), "window of {c} bits");
        let windows = windows(super::glv::HALF_BITS, c);
        let n = scalars.len();
        let mut codes = vec![0u32; n * 2 * windows];
        const CHUNK: usize = 1024;
        codes
            .par_chunks_mut(CHUNK * 2 * windows)
            .zip(scalars.par_chunks(CHUNK))
            .for_each(|(out, s)| {
                for (o, s) in out.chunks_mut(2 * windows).zip(s) {
                    let halves = super::glv::split(s);
                    for (o, (mag, neg)) in o.chunks_mut(windows).zip(halves) {
                        digits_of_magnitude(&mag, c, windows, neg as u32, o);
                    }
                }
            });
        Digits {
            c,
            windows,
            n,
            layout: Layout::PointMajor,
            glv: true,
            codes,
        }
    }
}

/// `r - 1 >> 1`: scalars above it are negated (`r - s`) before cutting digits.
const HALF_R: Scalar = {
    let m = ark_bn254::Fr::MODULUS.0;
    BigInt::new([
        (m[0] >> 1) | (m[1] << 63),
        (m[1] >> 1) | (m[2] << 63),
        (m[2] >> 1) | (m[3] << 63),
        m[3] >> 1,
    ])
};

/// `c` bits of `s` from bit `at` (zero past the top).
#[inline(always)]
fn bits_at(s: &[u64; 4], at: u32, c: u32) -> u64 {
    let limb = (at / 64) as usize;
    if limb >= 4 {
        return 0;
    }
    let shift = at % 64;
    let mut v = s[limb] >> shift;
    if shift + c > 64 && limb + 1 < 4 {
        v |= s[limb + 1] << (64 - shift);
    }
    v & ((1u64 << c) - 1)
}

/// Writes the signed digits of `s` to `out` (one per window).
#[inline]
pub(crate) fn signed_digits(s: &Scalar, c: u32, out: &mut [u32]) {
    let windows = windows(SCALAR_BITS, c);
    let (mag, neg) = if *s > HALF_R {
        let mut m = ark_bn254::Fr::MODULUS;
        m.sub_with_borrow(s);
        (m.0, 1u32)
    } else {
        (s.0, 0u32)
    };
    digits_of_magnitude(&mag, c, windows, neg, out);
}

/// Signed digits of a non-negative `mag` that fits `windows` windows, each
/// digit's sign flipped when `neg`.
#[inline]
pub(crate) fn digits_of_magnitude(
    mag: &[u64; 4],
    c: u32,
    windows: usize,
    neg: u32,
    out: &mut [u32],
) {
    let half = 1u64 << (c - 1);
    let full = 1u64 << c;
    let mut carry = 0u64;
    for (j, out) in out.iter_mut().enumerate().take(windows) {
        let w = bits_at(mag, j as u32 * c, c) + carry;
        let code = if w > half {
            carry = 1;
            let d = full - w;
            if d == 0 {
                0
            } else {
                ((d as u32) << 1) | (1 ^ neg)
            }
        } else {
            carry = 0;
            if w == 0 {
                0
            } else {
                ((w as u32) << 1) | neg
            }
        };
        *out = code;
    }
    debug_assert_eq!(carry, 0, "the top window absorbs the last carry");
}

/// The window for a variable-base sum of `n` points: the `c` minimising
/// `windows(c) * (n + 2^c * REDUCE)`, in units of one batch-affine addition.
/// A bucket costs about four additions' worth to sum (one mixed and one full
/// XYZZ addition), and there are `2^(c-1)` of them.
pub(crate) fn variable_window(n: usize) -> u32 {
    (4..=20)
        .min_by_key(|&c| {
            let w = windows(SCALAR_BITS, c) as u64;
            w * (n as u64 + (1u64 << (c - 1)) * 4)
        })
        .expect("a non-empty range")
}

/// `sum_{i < n} s_{first + i} * bases[i]` with the scalars' digits in
/// window-major layout: one set of buckets per window, windows in parallel.
pub(crate) fn msm_variable<P: SWCurveConfig>(
    bases: &[Affine<P>],
    digits: &Digits,
    first: usize,
    n: usize,
) -> Projective<P> {
    assert_eq!(digits.layout, Layout::WindowMajor);
    assert!(bases.len() >= n && digits.n >= first + n);
    let c = digits.c;
    if n == 0 {
        return Projective::zero();
    }
    let stride = digits.n;
    let sums: Vec<Projective<P>> = (0..digits.windows)
        .into_par_iter()
        .map(|j| {
            let codes = &digits.codes[j * stride + first..j * stride + first + n];
            let mut b = Buckets::<P>::new(1 << (c - 1), batch_size(1 << (c - 1)));
            for (code, base) in codes.iter().zip(bases) {
                if *code != 0 {
                    b.add(((code >> 1) - 1) as usize, base, code & 1 == 1);
                }
            }
            b.sum().0
        })
        .collect();
    let mut acc = Projective::<P>::zero();
    for s in sums.iter().rev() {
        for _ in 0..c {
            acc.double_in_place();
        }
        acc += s;
    }
    acc
}

/// `sum_{i < n} s_{first + i} * P_i` from a fixed-base table (`table[i *
/// windows + j]` = `2^(c*j) * P_i`) and point-major digits of the same window
/// width. All windows share one set of buckets; parts of the bucket range are
/// summed in parallel, each scanning every digit for its own.
pub(crate) fn msm_fixed<P: SWCurveConfig>(
    table: &[Affine<P>],
    digits: &Digits,
    first: usize,
    n: usize,
) -> Projective<P> {
    assert!(digits.layout == Layout::PointMajor && !digits.glv);
    let w = digits.windows;
    assert!(digits.n >= first + n && table.len() >= n * w);
    let codes = &digits.codes[first * w..(first + n) * w];
    let table = &table[..n * w];
    let buckets = 1usize << (digits.c - 1);
    // Four parts per thread, so a thread that comes free late (from the FFTs on
    // the other side of the proof) still finds work; each part scans every
    // digit, which costs little beside its additions.
    let parts = (4 * rayon::current_num_threads()).clamp(1, (buckets / 256).max(1));
    let per = buckets.div_ceil(parts);
    (0..parts)
        .into_par_iter()
        .map(|t| {
            let lo = (t * per).min(buckets);
            let hi = ((t + 1) * per).min(buckets);
            if lo == hi {
                return Projective::zero();
            }
            let mut b = Buckets::<P>::new(hi - lo, batch_size(hi - lo));
            let (lo32, span) = (lo as u32, (hi - lo) as u32);
            for (code, point) in codes.iter().zip(table) {
                // A zero code wraps to a huge index, as does any bucket below `lo`.
                let k = (code >> 1).wrapping_sub(1).wrapping_sub(lo32);
                if k < span {
                    b.add(k as usize, point, code & 1 == 1);
                }
            }
            let (total, running) = b.sum();
            total + running * P::ScalarField::from(lo as u64)
        })
        .sum()
}

/// [`msm_fixed`] with GLV digits over a G1 table of 128-bit windows: each
/// entry is added once for `k1`'s digit and once, through `phi` (its x times
/// `beta`), for `k2`'s.
pub(crate) fn msm_fixed_glv(
    table: &[ark_bn254::G1Affine],
    digits: &Digits,
    first: usize,
    n: usize,
) -> ark_bn254::G1Projective {
    assert!(digits.layout == Layout::PointMajor && digits.glv);
    let w = digits.windows;
    assert!(digits.n >= first + n && table.len() >= n * w);
    let codes = &digits.codes[first * 2 * w..(first + n) * 2 * w];
    let table = &table[..n * w];
    let beta = super::glv::beta();
    let buckets = 1usize << (digits.c - 1);
    let parts = (4 * rayon::current_num_threads()).clamp(1, (buckets / 256).max(1));
    let per = buckets.div_ceil(parts);
    (0..parts)
        .into_par_iter()
        .map(|t| {
            let lo = (t * per).min(buckets);
            let hi = ((t + 1) * per).min(buckets);
            if lo == hi {
                return ark_bn254::G1Projective::zero();
            }
            let mut b = Buckets::<ark_bn254::g1::Config>::new(hi - lo, batch_size(hi - lo));
            let (lo32, span) = (lo as u32, (hi - lo) as u32);
            for (codes, points) in codes.chunks_exact(2 * w).zip(table.chunks_exact(w)) {
                let (k1, k2) = codes.split_at(w);
                for ((c1, c2), point) in k1.iter().zip(k2).zip(points) {
                    let k = (c1 >> 1).wrapping_sub(1).wrapping_sub(lo32);
                    if k < span {
                        b.add(k as usize, point, c1 & 1 == 1);
                    }
                    let k = (c2 >> 1).wrapping_sub(1).wrapping_sub(lo32);
                    if k < span {
                        let mut phi = *point;
                        phi.x *= beta;
                        b.add(k as usize, &phi, c2 & 1 == 1);
                    }
                }
            }
            let (total, running) = b.sum();
            total + running * ark_bn254::Fr::from(lo as u64)
        })
        .sum()
}

/// Pending additions per batched inversion, for `buckets` buckets. An
/// inversion costs about 150 multiplications, so a batch of `b` adds `150 / b`
/// to each addition; and a point whose bucket is already in the batch goes to
/// the XYZZ bucket, about 4 multiplications dearer, with probability about
/// `b / (2 * buckets)`. The sum is least near `b = 8.5 * sqrt(buckets)`.
fn batch_size(buckets: usize) -> usize {
    ((8.5 * (buckets as f64).sqrt()) as usize).clamp(32, 1024)
}

/// `sum (k + 1) * buckets[k]` and `sum buckets[k]` over affine buckets: the
/// running-sum reduction, from the top bucket down.
pub(crate) fn reduce_affine<P: SWCurveConfig>(
    affine: &[Affine<P>],
) -> (Projective<P>, Projective<P>) {
    let mut running = Bucket::<P>::ZERO;
    let mut total = Bucket::<P>::ZERO;
    for a in affine.iter().rev() {
        if !a.is_zero() {
            running += a;
        }
        total += &running;
    }
    (total.into(), running.into())
}

/// [`reduce_affine`] over affine buckets and their XYZZ overflow buckets.
pub(crate) fn reduce<P: SWCurveConfig>(
    affine: &[Affine<P>],
    shadow: &[Bucket<P>],
) -> (Projective<P>, Projective<P>) {
    let mut running = Bucket::<P>::ZERO;
    let mut total = Bucket::<P>::ZERO;
    for (a, s) in affine.iter().zip(shadow).rev() {
        if !a.is_zero() {
            running += a;
        }
        if !s.is_zero() {
            running += s;
        }
        total += &running;
    }
    (total.into(), running.into())
}
