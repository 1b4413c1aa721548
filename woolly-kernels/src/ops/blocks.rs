//! Building blocks written once over [`Simd`]: every loop here handles the tail (the
//! last `n % LANES` elements) with a partial load, so callers pass any length.

use half::f16;

use crate::simd::Simd;

/// An element a kernel can load as f32 lanes: f32 itself or f16 (KV caches).
pub trait Elem: Copy + Send + Sync + 'static {
    /// Loads `s[..V::LANES]` widened to f32.
    fn load<V: Simd>(v: V, s: &[Self]) -> V::F32;
    /// Loads `s` (at most `V::LANES` values) widened, the other lanes zero.
    fn load_partial<V: Simd>(v: V, s: &[Self]) -> V::F32;
}

impl Elem for f32 {
    #[inline(always)]
    fn load<V: Simd>(v: V, s: &[f32]) -> V::F32 {
        v.load(s)
    }
    #[inline(always)]
    fn load_partial<V: Simd>(v: V, s: &[f32]) -> V::F32 {
        v.load_partial(s, 0.0)
    }
}

impl Elem for f16 {
    #[inline(always)]
    fn load<V: Simd>(v: V, s: &[f16]) -> V::F32 {
        v.load_f16(s)
    }
    #[inline(always)]
    fn load_partial<V: Simd>(v: V, s: &[f16]) -> V::F32 {
        v.load_partial_f16(s)
    }
}

/// `sum_i a[i] * b[i]`, with four independent accumulators to hide FMA latency.
/// shapes: a, b: (n,)
#[inline(always)]
pub fn dot<V: Simd, A: Elem, B: Elem>(v: V, a: &[A], b: &[B]) -> f32 {
    assert_eq!(a.len(), b.len());
    let n = a.len();
    let l = V::LANES;
    let mut acc = [v.zero(); 4];
    let mut i = 0;
    while i + 4 * l <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            let o = i + j * l;
            *acc = v.mul_add(A::load(v, &a[o..]), B::load(v, &b[o..]), *acc);
        }
        i += 4 * l;
    }
    while i + l <= n {
        acc[0] = v.mul_add(A::load(v, &a[i..]), B::load(v, &b[i..]), acc[0]);
        i += l;
    }
    if i < n {
        let x = A::load_partial(v, &a[i..]);
        acc[1] = v.mul_add(x, B::load_partial(v, &b[i..]), acc[1]);
    }
    v.hsum(v.add(v.add(acc[0], acc[1]), v.add(acc[2], acc[3])))
}

/// `y[i] = x[i] * s * w[i]`.                             shapes: x, w, y: (n,)
#[inline(always)]
pub fn scale_mul<V: Simd>(v: V, x: &[f32], s: f32, w: &[f32], y: &mut [f32]) {
    let n = y.len();
    assert!(x.len() == n && w.len() == n);
    let l = V::LANES;
    let sv = v.splat(s);
    let mut i = 0;
    while i + l <= n {
        let r = v.mul(v.mul(v.load(&x[i..]), sv), v.load(&w[i..]));
        v.store(&mut y[i..], r);
        i += l;
    }
    if i < n {
        let r = v.mul(
            v.mul(v.load_partial(&x[i..], 0.0), sv),
            v.load_partial(&w[i..], 0.0),
        );
        v.store_partial(&mut y[i..], r);
    }
}

/// `acc[i] = acc[i] * c + p * x[i]`: the online-softmax update of an attention output.
/// shapes: acc, x: (n,)
#[inline(always)]
pub fn scale_add<V: Simd, E: Elem>(v: V, acc: &mut [f32], c: f32, p: f32, x: &[E]) {
    let n = acc.len();
    assert_eq!(x.len(), n);
    let l = V::LANES;
    let (cv, pv) = (v.splat(c), v.splat(p));
    let mut i = 0;
    while i + l <= n {
        let r = v.mul_add(pv, E::load(v, &x[i..]), v.mul(v.load(&acc[i..]), cv));
        v.store(&mut acc[i..], r);
        i += l;
    }
    if i < n {
        let r = v.mul_add(
            pv,
            E::load_partial(v, &x[i..]),
            v.mul(v.load_partial(&acc[i..], 0.0), cv),
        );
        v.store_partial(&mut acc[i..], r);
    }
}
