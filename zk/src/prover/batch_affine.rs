//! Buckets kept in affine coordinates and filled in batches: the additions of a
//! batch share one field inversion (Montgomery's trick), so an addition costs
//! about 6 field multiplications instead of the 10 of a mixed XYZZ addition.
//!
//! An affine addition needs the two points' x to differ and the bucket not to
//! be part of the batch already. The rare additions that break either rule
//! (a bucket met twice in one batch, a point equal or opposite to its bucket,
//! runs of equal digits from small scalars) go to a second, XYZZ bucket of the
//! same index instead, whose formulas are complete; the two are summed at the
//! end. No queue, no stall, and a scalar vector of all ones costs no more than
//! arkworks' own buckets.

use ark_ec::short_weierstrass::{Affine, Bucket, Projective, SWCurveConfig};
use ark_ec::AffineRepr;
use ark_ff::Field;

pub(crate) struct Buckets<P: SWCurveConfig> {
    affine: Vec<Affine<P>>,
    /// XYZZ overflow buckets, allocated on the first overflow.
    shadow: Vec<Bucket<P>>,
    in_batch: Vec<bool>,
    pending: Vec<(u32, Affine<P>)>,
    prefix: Vec<P::BaseField>,
    batch: usize,
}

impl<P: SWCurveConfig> Buckets<P> {
    /// `count` empty buckets; additions are batched `batch` at a time.
    pub fn new(count: usize, batch: usize) -> Self {
        Buckets {
            affine: vec![Affine::<P>::identity(); count],
            shadow: Vec::new(),
            in_batch: vec![false; count],
            pending: Vec::with_capacity(batch),
            prefix: Vec::with_capacity(batch),
            batch,
        }
    }

    #[inline]
    fn overflow(&mut self, k: usize, p: &Affine<P>) {
        if self.shadow.is_empty() {
            self.shadow = vec![Bucket::<P>::ZERO; self.affine.len()];
        }
        self.shadow[k] += p;
    }

    /// Adds `point` (or its negation) to bucket `k`. The identity is skipped.
    #[inline]
    pub fn add(&mut self, k: usize, point: &Affine<P>, negate: bool) {
        if point.is_zero() {
            return;
        }
        let mut p = *point;
        if negate {
            p.y = -p.y;
        }
        if self.in_batch[k] {
            self.overflow(k, &p);
            return;
        }
        let b = &mut self.affine[k];
        if b.is_zero() {
            *b = p;
            return;
        }
        if b.x == p.x {
            // Equal (a doubling) or opposite (the identity): not an affine chord.
            self.overflow(k, &p);
            return;
        }
        self.in_batch[k] = true;
        self.pending.push((k as u32, p));
        if self.pending.len() >= self.batch {
            self.flush();
        }
    }

    /// Performs the pending additions with one inversion.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.prefix.clear();
        let mut acc = P::BaseField::ONE;
        for (k, p) in &self.pending {
            self.prefix.push(acc);
            acc *= p.x - self.affine[*k as usize].x;
        }
        let mut inv = acc
            .inverse()
            .expect("every pending addition has distinct x coordinates");
        for ((k, p), before) in self.pending.iter().zip(&self.prefix).rev() {
            let k = *k as usize;
            let b = &mut self.affine[k];
            let dx = p.x - b.x;
            let dx_inv = inv * before;
            inv *= dx;
            let lambda = (p.y - b.y) * dx_inv;
            let x3 = lambda.square() - b.x - p.x;
            b.y = lambda * (b.x - x3) - b.y;
            b.x = x3;
            self.in_batch[k] = false;
        }
        self.pending.clear();
    }

    /// Flushes, then returns `sum_k (k + 1) * bucket_k` and `sum_k bucket_k`.
    pub fn sum(mut self) -> (Projective<P>, Projective<P>) {
        self.flush();
        if self.shadow.is_empty() {
            super::msm::reduce_affine(&self.affine)
        } else {
            super::msm::reduce(&self.affine, &self.shadow)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_bn254::{g1, G1Affine, G1Projective};
    use ark_ec::CurveGroup;
    use ark_ff::Zero;
    use ark_std::UniformRand;

    /// Buckets agree with plain additions, including the cases the affine formula
    /// cannot take: doubling, cancelling, the identity, one bucket many times.
    #[test]
    fn buckets_add_like_the_group() {
        let mut rng = ark_std::test_rng();
        let points: Vec<G1Affine> = (0..40)
            .map(|_| G1Projective::rand(&mut rng).into_affine())
            .collect();
        let mut ops = vec![];
        for i in 0..400usize {
            let p = points[i % points.len()];
            ops.push(((i * 7) % 5, p, i % 3 == 0));
        }
        // Doubling and cancelling against a bucket's current value.
        ops.push((4, points[0], false));
        ops.push((4, points[0], false));
        ops.push((3, points[1], false));
        ops.push((3, points[1], true));
        ops.push((2, G1Affine::identity(), false));
        for batch in [1, 2, 3, 8, 64] {
            let mut b = Buckets::<g1::Config>::new(5, batch);
            let mut want = [G1Projective::zero(); 5];
            for (k, p, neg) in &ops {
                b.add(*k, p, *neg);
                if *neg {
                    want[*k] -= p;
                } else {
                    want[*k] += p;
                }
            }
            let (total, running) = b.sum();
            let mut w_total = G1Projective::zero();
            let mut w_running = G1Projective::zero();
            for (k, w) in want.iter().enumerate() {
                w_total += *w * ark_bn254::Fr::from(k as u64 + 1);
                w_running += w;
            }
            assert_eq!(total, w_total, "batch {batch}");
            assert_eq!(running, w_running, "batch {batch}");
        }
    }
}
