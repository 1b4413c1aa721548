//! Expansion tests: feed the macro tokens, check the generated items and the errors.

use quote::quote;

use crate::expand::expand;

fn expanded(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
    expand(attr, item)
        .unwrap_or_else(|e| panic!("expansion failed: {e}"))
        .to_string()
}

fn error(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream) -> String {
    match expand(attr, item) {
        Ok(ts) => panic!("expected an error, got {ts}"),
        Err(e) => e.to_string(),
    }
}

fn rmsnorm_item() -> proc_macro2::TokenStream {
    quote! {
        /// y = x * rsqrt(mean(x^2) + eps) * w
        pub fn rmsnorm<V: Simd, const D: usize>(v: V, x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
            let _ = (v, x, w, eps, y);
        }
    }
}

fn rmsnorm_attr() -> proc_macro2::TokenStream {
    quote! {
        isa(scalar, avx2, avx512, neon), dims(D = [576, 2048], dyn),
        reference = reference::rmsnorm, tolerance = rel(1e-5),
        test(x = rng.f32s(D), w = rng.f32s(D), eps = 1e-5, y = rng.f32s(D)),
        override(avx512 = hand::rmsnorm_avx512)
    }
}

#[test]
fn variants_per_isa_and_dim() {
    let out = expanded(rmsnorm_attr(), rmsnorm_item());
    for needle in [
        "pub mod rmsnorm",
        "pub mod scalar",
        "pub mod avx2",
        "pub mod avx512",
        "pub mod neon",
        "pub fn d576",
        "pub fn d2048",
        "pub fn dyn_",
        "pub unsafe fn d2048_unchecked",
        "fn test_d2048",
        "fn test_dyn_",
        "# [target_feature (enable = \"avx2,fma,f16c\")]",
        "# [cfg (target_arch = \"x86_64\")]",
        "# [cfg (target_arch = \"aarch64\")]",
        "pub static ENTRIES",
        "pub fn select",
        "name : \"avx2::d2048\"",
        "super :: super :: rmsnorm :: < :: woolly_kernels :: isa :: Avx2Token , 2048usize >",
        // Relative paths are resolved from the user's module, two levels up, so the
        // generated `avx2`/`avx512` modules cannot capture them.
        "super :: super :: hand :: rmsnorm_avx512 :: < 576usize > (token , x , w , eps , y)",
        "super :: super :: reference :: rmsnorm (& x , & w , eps , & mut y_want)",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in\n{out}");
    }
    // neon_dotprod was not listed.
    assert!(!out.contains("neon_dotprod"));
    // The generic body is kept, inlined into every variant.
    assert!(out.contains("# [inline (always)] pub fn rmsnorm"));
}

#[test]
fn kernel_without_dims_has_only_dyn() {
    let out = expanded(
        quote!(
            isa(scalar),
            reference = r::dot,
            test(a = rng.f32s(3), b = rng.f32s(3))
        ),
        quote!(
            fn dot<V: Simd>(v: V, a: &[f32], b: &[f32]) -> f32 {
                0.0
            }
        ),
    );
    assert!(out.contains("pub fn dyn_"));
    assert!(out.contains("pub type Ptr = unsafe fn (& [f32] , & [f32]) -> f32"));
    assert!(!(0..10).any(|d| out.contains(&format!("fn test_d{d}"))));
}

#[test]
fn errors_name_the_fault() {
    let item = rmsnorm_item();
    let cases = [
        (
            quote!(isa(scalar, sse9), reference = r),
            "unknown ISA `sse9`",
        ),
        (quote!(isa(avx2), reference = r), "must include `scalar`"),
        (
            quote!(isa(scalar), dims(D = [64]), reference = r),
            "must end with `, dyn`",
        ),
        (
            quote!(isa(scalar), dims(D = [0], dyn), reference = r),
            "cannot be 0",
        ),
        (
            quote!(isa(scalar), dims(N = [64], dyn), reference = r, test(x = 1, w = 1, eps = 1, y = 1)),
            "must be the function's const parameters",
        ),
        (
            quote!(isa(scalar), dims(D = [64], dyn)),
            "missing `reference",
        ),
        (
            quote!(isa(scalar), colour = red, reference = r),
            "unknown kernel option `colour`",
        ),
        (
            quote!(isa(scalar), dims(D = [64], dyn), reference = r, test(x = 1, w = 1, eps = 1)),
            "no test input for `y`",
        ),
        (
            quote!(isa(scalar), reference = r, override(avx2 = p)),
            "which `isa(...)` does not list",
        ),
        (
            quote!(isa(scalar), dims((A, B) = [(1, 2, 3)], dyn), reference = r),
            "has 3 values",
        ),
    ];
    for (attr, want) in cases {
        let got = error(attr, item.clone());
        assert!(got.contains(want), "error `{got}` should contain `{want}`");
    }
    let got = error(
        quote!(isa(scalar), reference = r, test(x = 1)),
        quote!(
            fn f<V: Simd>(x: &[f32]) {}
        ),
    );
    assert!(
        got.contains("first parameter must be the vocabulary token"),
        "{got}"
    );
}

#[test]
fn errors_are_spanned_at_the_user_tokens() {
    // The error for a bad ISA points at the bad name, not at the attribute.
    let attr: proc_macro2::TokenStream = "isa(scalar, sse9), reference = r".parse().unwrap();
    let bad = attr
        .clone()
        .into_iter()
        .find_map(|t| match t {
            proc_macro2::TokenTree::Group(g) => g.stream().into_iter().nth(2),
            _ => None,
        })
        .unwrap();
    let err = expand(attr, rmsnorm_item()).unwrap_err();
    assert_eq!(format!("{:?}", err.span()), format!("{:?}", bad.span()));
}

#[test]
fn specialize_toml_subset() {
    use crate::parse::parse_specialize;
    let t = parse_specialize("# dims\nhidden = [576, 2_048]  # SmolLM2, TinyLlama\n\nffn = []\n")
        .unwrap();
    assert_eq!(
        t,
        vec![
            ("hidden".to_owned(), vec![576, 2048]),
            ("ffn".to_owned(), vec![])
        ]
    );
    assert!(
        parse_specialize("hidden = 576")
            .unwrap_err()
            .contains("line 1")
    );
    assert!(
        parse_specialize("hidden = [0]")
            .unwrap_err()
            .contains("cannot be 0")
    );
}

#[test]
fn spec_reads_the_crate_file() {
    // This crate has no specialize.toml: the error names the file and points at the key.
    let got = error(
        quote!(isa(scalar), dims(D = spec("hidden"), dyn), reference = r),
        rmsnorm_item(),
    );
    assert!(got.contains("specialize.toml"), "{got}");
}
