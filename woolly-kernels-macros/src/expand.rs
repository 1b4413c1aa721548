//! Expanding a parsed kernel into its variants, registry, dispatch and tests.
//!
//! For `fn rmsnorm<V: Simd, const D: usize>` with `isa(scalar, avx2)` and
//! `dims(D = [2048], dyn)` the output is, in outline:
//!
//! ```text
//! #[inline(always)] fn rmsnorm<V: Simd, const D: usize>(...) { <body as written> }
//! pub mod rmsnorm {
//!     pub type Ptr = unsafe fn(<params>) -> <ret>;
//!     pub mod scalar { pub fn d2048(ScalarToken, ..); pub unsafe fn d2048_unchecked(..);
//!                      pub fn dyn_(..); pub unsafe fn dyn__unchecked(..); #[test] fn test_d2048 .. }
//!     #[cfg(target_arch = "x86_64")]
//!     pub mod avx2 { #[target_feature(enable = "avx2,fma,f16c")] pub unsafe fn d2048_unchecked(..) .. }
//!     pub static ENTRIES: &[Entry<Ptr>] = &[..];
//!     pub struct Selected; pub fn select(isa, dims) -> Selected;
//! }
//! ```

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{Ident, ItemFn, Type};

use crate::parse::{IsaDef, KernelAttr, KernelFn, kernel_fn};

/// Expands `#[kernel(attr)] item`, or returns the error to emit.
pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let attr: KernelAttr = syn::parse2(attr)?;
    let item: ItemFn = syn::parse2(item)?;
    let k = kernel_fn(item, &attr)?;
    Ok(generate(&attr, &k))
}

/// One specialization: the const values (empty for `dyn`), and the variant's name.
struct Variant {
    dims: Option<Vec<usize>>,
    name: Ident,
}

fn variants(attr: &KernelAttr, k: &KernelFn) -> syn::Result<Vec<Variant>> {
    let mut out = Vec::new();
    if let Some(d) = &attr.dims {
        for vals in &d.values {
            let nums = vals
                .iter()
                .map(|v| v.base10_parse::<usize>())
                .collect::<syn::Result<Vec<_>>>()?;
            let name = format!(
                "d{}",
                nums.iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join("_")
            );
            out.push(Variant {
                dims: Some(nums),
                name: Ident::new(&name, Span::call_site()),
            });
        }
    }
    let _ = k;
    out.push(Variant {
        dims: None,
        name: Ident::new("dyn_", Span::call_site()),
    });
    Ok(out)
}

fn generate(attr: &KernelAttr, k: &KernelFn) -> TokenStream {
    match try_generate(attr, k) {
        Ok(ts) => ts,
        Err(e) => e.to_compile_error(),
    }
}

fn try_generate(attr: &KernelAttr, k: &KernelFn) -> syn::Result<TokenStream> {
    let kr = quote!(::woolly_kernels);
    let mut body_fn = k.item.clone();
    body_fn.attrs.push(syn::parse_quote!(#[inline(always)]));
    let op = &k.item.sig.ident;
    let op_str = op.to_string();
    let vis = &k.item.vis;
    let ret = &k.ret;
    let ret_ty: Type = match ret {
        syn::ReturnType::Default => syn::parse_quote!(()),
        syn::ReturnType::Type(_, t) => (**t).clone(),
    };
    let names: Vec<&Ident> = k.params.iter().map(|p| &p.name).collect();
    let tys: Vec<&Type> = k.params.iter().map(|p| &p.ty).collect();
    let variants = variants(attr, k)?;
    let n_consts = k.consts.len();

    let mut isa_mods = Vec::new();
    let mut entries = Vec::new();
    let mut infos = Vec::new();
    for isa in &attr.isas {
        let isa_mod = Ident::new(isa.name, Span::call_site());
        let token = Ident::new(isa.token, Span::call_site());
        let isa_variant = Ident::new(isa.variant, Span::call_site());
        let cfg = isa
            .arch
            .map(|a| quote!(#[cfg(target_arch = #a)]))
            .unwrap_or_default();
        let target_feature = if isa.features.is_empty() {
            quote!()
        } else {
            let f = isa.features;
            quote!(#[target_feature(enable = #f)])
        };
        let over = attr
            .overrides
            .iter()
            .find(|(d, _)| d == isa)
            .map(|(_, p)| from_isa_module(p));
        let mut fns = Vec::new();
        for v in &variants {
            let vname = &v.name;
            let unchecked = format_ident!("{}_unchecked", v.name);
            let test_name = format_ident!("test_{}", v.name);
            let consts: Vec<TokenStream> = match &v.dims {
                Some(d) => d.iter().map(|n| quote!(#n)).collect(),
                None => (0..n_consts).map(|_| quote!(0)).collect(),
            };
            let call = match &over {
                Some(p) if n_consts == 0 => quote!(#p(token, #(#names),*)),
                Some(p) => quote!(#p::<#(#consts),*>(token, #(#names),*)),
                None => {
                    quote!(super::super::#op::<#kr::isa::#token, #(#consts),*>(token, #(#names),*))
                }
            };
            let label = format!("{op_str}::{}::{vname}", isa.name);
            let dims_doc = match &v.dims {
                Some(d) => format!(
                    "specialized for ({}) = ({})",
                    join(&k.consts),
                    d.iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "generic: any size".to_owned(),
            };
            let doc_safe = format!(
                "[`{op_str}`](fn@super::super::{op_str}) on `{}`, {dims_doc}.",
                isa.name
            );
            let doc_unchecked = format!(
                "As [`{vname}`], for the registry's fn pointer.\n\n# Safety\nThe CPU must have `{}` (`Isa::{}.is_available()`).",
                isa.name, isa.variant
            );
            fns.push(quote! {
                #[doc = #doc_unchecked]
                #target_feature
                #[allow(clippy::too_many_arguments, unused_unsafe)]
                pub unsafe fn #unchecked(#(#names: #tys),*) #ret {
                    // SAFETY: the caller guarantees the CPU has this ISA (see above).
                    let token = unsafe { <#kr::isa::#token as #kr::isa::Token>::new_unchecked() };
                    // SAFETY: this function is compiled with the ISA's features, which
                    // an override's `#[target_feature]` needs.
                    unsafe { #call }
                }

                #[doc = #doc_safe]
                #[inline]
                #[allow(clippy::too_many_arguments)]
                pub fn #vname(token: #kr::isa::#token, #(#names: #tys),*) #ret {
                    let _ = token;
                    // SAFETY: `token` proves the CPU has the features `#unchecked` is
                    // compiled with.
                    unsafe { #unchecked(#(#names),*) }
                }
            });
            fns.push(test_fn(attr, k, isa, v, &test_name, &token, &label));
            let dims_expr = match &v.dims {
                Some(d) => quote!(Some(&[#(#d),*])),
                None => quote!(None),
            };
            let vname_str = format!("{}::{vname}", isa.name);
            entries.push(quote! {
                #cfg
                #kr::registry::Entry {
                    op: #op_str,
                    isa: #kr::isa::Isa::#isa_variant,
                    dims: #dims_expr,
                    name: #vname_str,
                    ptr: #isa_mod::#unchecked as Ptr,
                }
            });
            infos.push(quote! {
                #cfg
                (#kr::isa::Isa::#isa_variant, #dims_expr, #vname_str)
            });
        }
        let mod_doc = format!("`{op_str}` compiled for `{}`.", isa.name);
        isa_mods.push(quote! {
            #cfg
            #[doc = #mod_doc]
            pub mod #isa_mod {
                #[allow(unused_imports)]
                use super::*;
                #(#fns)*
            }
        });
    }

    let mod_doc = format!(
        "Variants of [`{op_str}`](fn@{op_str}) generated by `#[kernel]`: one module per ISA, \
         one function per specialization, the registry `ENTRIES` and `select`."
    );
    // Cargo does not track files a proc-macro reads: including the bytes does.
    let track = attr
        .dims
        .as_ref()
        .and_then(|d| d.source.as_ref())
        .map(|p| {
            quote!(
                const _: &[u8] = include_bytes!(#p);
            )
        })
        .unwrap_or_default();
    Ok(quote! {
        #body_fn

        #[doc = #mod_doc]
        #vis mod #op {
            #[allow(unused_imports)]
            use super::*;

            #track

            /// The variants' common signature (the vocabulary token dropped). `unsafe`:
            /// a variant runs its ISA's instructions.
            pub type Ptr = unsafe fn(#(#tys),*) #ret;

            #(#isa_mods)*

            /// Every compiled variant.
            pub static ENTRIES: &[#kr::registry::Entry<Ptr>] = &[#(#entries),*];

            /// The registry's view of this op, without fn pointers.
            pub static INFO: #kr::registry::OpInfo = #kr::registry::OpInfo {
                name: #op_str,
                variants: &[#(#infos),*],
            };

            /// A variant chosen by [`select`], callable safely: it only holds entries
            /// whose ISA the CPU has.
            #[derive(Clone, Copy, Debug)]
            pub struct Selected(&'static #kr::registry::Entry<Ptr>);

            impl Selected {
                /// The registry entry chosen.
                pub fn entry(self) -> &'static #kr::registry::Entry<Ptr> {
                    self.0
                }

                /// Runs the variant.
                #[inline(always)]
                #[allow(clippy::too_many_arguments)]
                pub fn call(self, #(#names: #tys),*) -> #ret_ty {
                    // SAFETY: `select` returns only entries whose ISA is available.
                    unsafe { (self.0.ptr)(#(#names),*) }
                }
            }

            /// The variant for `isa` and `dims` (in the order of the const parameters):
            /// exact dims, else generic, on `isa` and then on its fallbacks.
            ///
            /// # Panics
            /// When the CPU lacks `isa`.
            pub fn select(isa: #kr::isa::Isa, dims: &[usize]) -> Selected {
                Selected(#kr::registry::find(ENTRIES, isa, dims))
            }
        }
    })
}

fn test_fn(
    attr: &KernelAttr,
    k: &KernelFn,
    isa: &IsaDef,
    v: &Variant,
    test_name: &Ident,
    token: &Ident,
    label: &str,
) -> TokenStream {
    let kr = quote!(::woolly_kernels);
    let vname = &v.name;
    let consts = &k.consts;
    let n = consts.len();
    let reference = from_isa_module(&attr.reference);
    let sizes = match &v.dims {
        Some(d) => quote!(vec![[#(#d),*]]),
        None => {
            quote!(#kr::testing::size_tuples::<#n>(<#kr::isa::#token as #kr::simd::Simd>::LANES))
        }
    };
    let tol = match &attr.tolerance {
        Some(t) => quote!({
            #[allow(unused_imports)]
            use #kr::testing::tolerance::*;
            #t
        }),
        None => quote!(#kr::testing::Tolerance::Exact),
    };
    let cases = attr
        .cases
        .as_ref()
        .map(|c| quote!(#c))
        .unwrap_or(quote!(64));
    let inputs = attr
        .tests
        .iter()
        .map(|(name, e)| quote!(let mut #name = #e;));
    let mut args = Vec::new();
    let mut ref_args = Vec::new();
    let mut wants = Vec::new();
    let mut checks = Vec::new();
    for p in &k.params {
        let name = &p.name;
        match &p.ty {
            Type::Reference(r) if r.mutability.is_some() => {
                let want = format_ident!("{}_want", name);
                let name_str = name.to_string();
                wants.push(quote!(let mut #want = #name.clone();));
                args.push(quote!(&mut #name));
                ref_args.push(quote!(&mut #want));
                checks.push(quote! {
                    #kr::testing::Compare::compare(&#name, &#want, tol)
                        .map_err(|e| format!("{} (dims {:?}): {e}", #name_str, dims))?;
                });
            }
            Type::Reference(_) => {
                args.push(quote!(&#name));
                ref_args.push(quote!(&#name));
            }
            _ => {
                args.push(quote!(#name));
                ref_args.push(quote!(#name));
            }
        }
    }
    let _ = isa;
    quote! {
        #[cfg(test)]
        #[test]
        #[allow(non_snake_case, unused_mut, unused_variables, clippy::unnecessary_mut_passed)]
        fn #test_name() {
            let Some(token) = #kr::testing::token_or_skip::<#kr::isa::#token>(#label) else {
                return;
            };
            let sizes: Vec<[usize; #n]> = #sizes;
            let tol: #kr::testing::Tolerance = #tol;
            #kr::testing::cases(#label, #cases, sizes.len(), |size, seed| {
                let dims = sizes[size];
                let [#(#consts),*] = dims;
                let mut rng = #kr::testing::TestRng::new(seed);
                #(#inputs)*
                #(#wants)*
                let got = #vname(token, #(#args),*);
                let want = #reference(#(#ref_args),*);
                #kr::testing::Compare::compare(&got, &want, tol)
                    .map_err(|e| format!("return value (dims {:?}): {e}", dims))?;
                #(#checks)*
                Ok(())
            });
        }
    }
}

/// `path` as seen from inside a generated ISA module, two levels below the user's
/// module: relative paths get `super::super::` so that a name the generated modules also
/// define (`avx2`, the op's own name) cannot capture them.
fn from_isa_module(path: &syn::Path) -> TokenStream {
    let first = path.segments.first().map(|s| s.ident.to_string());
    match first.as_deref() {
        _ if path.leading_colon.is_some() => quote!(#path),
        Some("crate") => quote!(#path),
        Some("self") => {
            let rest = path.segments.iter().skip(1);
            quote!(super::super #(:: #rest)*)
        }
        _ => quote!(super::super::#path),
    }
}

fn join(ids: &[Ident]) -> String {
    ids.iter()
        .map(Ident::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
