//! Criterion benchmarks of Woolly's kernels live in `benches/`; this library is empty.
