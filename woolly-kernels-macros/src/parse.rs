//! Parsing `#[kernel(...)]`: the attribute's options and the shape of the function it is
//! on. Every error is a `syn::Error` spanned at the user's tokens at fault.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Expr, FnArg, GenericParam, Ident, ItemFn, LitInt, Pat, Path, ReturnType, Token, Type,
    bracketed, parenthesized,
};

/// An ISA the macro can generate for: its name, token type, features and architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaDef {
    /// The ISA's name (also its module name in the expansion).
    pub name: &'static str,
    /// The token type in `woolly_kernels::isa`.
    pub token: &'static str,
    /// The `Isa` variant.
    pub variant: &'static str,
    /// `#[target_feature(enable = ...)]`, empty for scalar.
    pub features: &'static str,
    /// `target_arch` the ISA is compiled on, `None` for every architecture.
    pub arch: Option<&'static str>,
}

/// Every ISA, in the order variants are generated.
pub const ISAS: [IsaDef; 5] = [
    IsaDef {
        name: "scalar",
        token: "ScalarToken",
        variant: "Scalar",
        features: "",
        arch: None,
    },
    IsaDef {
        name: "avx2",
        token: "Avx2Token",
        variant: "Avx2",
        features: "avx2,fma,f16c",
        arch: Some("x86_64"),
    },
    IsaDef {
        name: "avx512",
        token: "Avx512Token",
        variant: "Avx512",
        features: "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
        arch: Some("x86_64"),
    },
    IsaDef {
        name: "neon",
        token: "NeonToken",
        variant: "Neon",
        features: "neon",
        arch: Some("aarch64"),
    },
    IsaDef {
        name: "neon_dotprod",
        token: "NeonDotprodToken",
        variant: "NeonDotprod",
        features: "neon,dotprod",
        arch: Some("aarch64"),
    },
];

fn isa_by_name(name: &Ident) -> syn::Result<IsaDef> {
    ISAS.iter()
        .copied()
        .find(|d| name == d.name)
        .ok_or_else(|| {
            syn::Error::new(
                name.span(),
                format!(
                    "unknown ISA `{name}`: expected one of scalar, avx2, avx512, neon, neon_dotprod"
                ),
            )
        })
}

/// `dims(D = [576, 2048], dyn)` or `dims((H, D) = [(32, 64), (8, 128)], dyn)`.
pub struct Dims {
    /// The const parameters, in order.
    pub names: Vec<Ident>,
    /// The specialized tuples, each as long as `names`.
    pub values: Vec<Vec<LitInt>>,
    /// Where the attribute's `dims` keyword is, for errors about it as a whole.
    pub span: Span,
    /// The `specialize.toml` the values came from, if any (the expansion
    /// `include_bytes!`s it so cargo rebuilds when it changes).
    pub source: Option<String>,
}

/// The file `dims(D = spec("key"), dyn)` reads, relative to the crate's manifest.
pub const SPECIALIZE_FILE: &str = "specialize.toml";

/// Parses the subset of TOML `specialize.toml` uses: `# comments` and lines
/// `key = [1, 2, 3]`.
pub fn parse_specialize(text: &str) -> Result<Vec<(String, Vec<usize>)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = || format!("line {}: expected `key = [1, 2, ...]`, got `{line}`", i + 1);
        let (key, list) = line.split_once('=').ok_or_else(err)?;
        let list = list.trim();
        let inner = list
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .ok_or_else(err)?;
        let values = inner
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| v.replace('_', "").parse::<usize>().map_err(|_| err()))
            .collect::<Result<Vec<_>, _>>()?;
        if values.contains(&0) {
            return Err(format!("line {}: a dimension cannot be 0", i + 1));
        }
        out.push((key.trim().to_owned(), values));
    }
    Ok(out)
}

/// The values of `key` in the crate's `specialize.toml`, and the file's path.
fn spec_values(key: &syn::LitStr) -> syn::Result<(Vec<LitInt>, String)> {
    let dir = std::env::var("CARGO_MANIFEST_DIR")
        .map_err(|_| syn::Error::new(key.span(), "CARGO_MANIFEST_DIR is not set"))?;
    let path = std::path::Path::new(&dir).join(SPECIALIZE_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| syn::Error::new(key.span(), format!("cannot read {}: {e}", path.display())))?;
    let table = parse_specialize(&text)
        .map_err(|e| syn::Error::new(key.span(), format!("{}: {e}", path.display())))?;
    let values = table
        .into_iter()
        .find(|(k, _)| *k == key.value())
        .map(|(_, v)| v)
        .ok_or_else(|| {
            syn::Error::new(
                key.span(),
                format!("{} has no `{}` list", path.display(), key.value()),
            )
        })?;
    let lits = values
        .iter()
        .map(|v| LitInt::new(&v.to_string(), key.span()))
        .collect();
    Ok((lits, path.display().to_string()))
}

/// The parsed `#[kernel(...)]` options.
pub struct KernelAttr {
    /// The ISAs to generate, in the attribute's order.
    pub isas: Vec<IsaDef>,
    /// The specializations; `None` when the kernel has no const parameters.
    pub dims: Option<Dims>,
    /// The scalar oracle, called with the kernel's arguments minus the vocabulary.
    pub reference: Path,
    /// The tolerance expression (`rel(1e-5)`, `abs(..)`, `exact()`), default `exact()`.
    pub tolerance: Option<Expr>,
    /// Test inputs, one expression per parameter, evaluated in this order.
    pub tests: Vec<(Ident, Expr)>,
    /// Total proptest cases per variant.
    pub cases: Option<LitInt>,
    /// Hand-written bodies per ISA.
    pub overrides: Vec<(IsaDef, Path)>,
}

fn parse_list<T>(
    input: ParseStream,
    f: impl Fn(ParseStream) -> syn::Result<T>,
) -> syn::Result<Vec<T>> {
    let content;
    parenthesized!(content in input);
    let mut out = Vec::new();
    while !content.is_empty() {
        out.push(f(&content)?);
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    Ok(out)
}

fn parse_dims(input: ParseStream, span: Span) -> syn::Result<Dims> {
    let content;
    parenthesized!(content in input);
    // The names: `D` or `(H, D)`.
    let tuple = content.peek(syn::token::Paren);
    let names: Vec<Ident> = if tuple {
        let inner;
        parenthesized!(inner in content);
        Punctuated::<Ident, Token![,]>::parse_terminated(&inner)?
            .into_iter()
            .collect()
    } else {
        vec![content.parse()?]
    };
    content.parse::<Token![=]>()?;
    let mut values = Vec::new();
    let mut source = None;
    if content.peek(Ident) {
        // `spec("key")`: the values come from specialize.toml.
        let kw: Ident = content.parse()?;
        if kw != "spec" {
            return Err(syn::Error::new(
                kw.span(),
                "expected `[...]` or `spec(\"key\")`",
            ));
        }
        if tuple {
            return Err(syn::Error::new(
                kw.span(),
                "`spec(...)` gives one list: use it with a single const parameter",
            ));
        }
        let inner;
        parenthesized!(inner in content);
        let key: syn::LitStr = inner.parse()?;
        let (lits, path) = spec_values(&key)?;
        values = lits.into_iter().map(|l| vec![l]).collect();
        source = Some(path);
        return finish_dims(&content, names, values, span, source);
    }
    let list;
    bracketed!(list in content);
    while !list.is_empty() {
        let tuple_span = list.span();
        let vals: Vec<LitInt> = if tuple {
            let inner;
            parenthesized!(inner in list);
            Punctuated::<LitInt, Token![,]>::parse_terminated(&inner)?
                .into_iter()
                .collect()
        } else {
            vec![list.parse()?]
        };
        if vals.len() != names.len() {
            return Err(syn::Error::new(
                tuple_span,
                format!(
                    "this specialization has {} values but `dims` names {} const parameters",
                    vals.len(),
                    names.len()
                ),
            ));
        }
        for v in &vals {
            if v.base10_parse::<usize>()? == 0 {
                return Err(syn::Error::new(
                    v.span(),
                    "a specialized dimension cannot be 0 (0 means `dyn`)",
                ));
            }
        }
        values.push(vals);
        if list.is_empty() {
            break;
        }
        list.parse::<Token![,]>()?;
    }
    finish_dims(&content, names, values, span, source)
}

/// Parses the mandatory `, dyn` after the values.
fn finish_dims(
    content: ParseStream,
    names: Vec<Ident>,
    values: Vec<Vec<LitInt>>,
    span: Span,
    source: Option<String>,
) -> syn::Result<Dims> {
    // The generic variant is mandatory: it serves every model.
    let missing_dyn = || {
        syn::Error::new(
            span,
            "`dims(...)` must end with `, dyn`: every kernel has a generic variant that serves any size",
        )
    };
    if content.is_empty() {
        return Err(missing_dyn());
    }
    content.parse::<Token![,]>()?;
    let kw = Ident::parse_any(content).map_err(|_| missing_dyn())?;
    if kw != "dyn" {
        return Err(syn::Error::new(kw.span(), "expected `dyn`"));
    }
    if !content.is_empty() {
        return Err(content.error("unexpected tokens after `dyn`"));
    }
    Ok(Dims {
        names,
        values,
        span,
        source,
    })
}

impl Parse for KernelAttr {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut isas = None;
        let mut dims = None;
        let mut reference = None;
        let mut tolerance = None;
        let mut tests = Vec::new();
        let mut cases = None;
        let mut overrides = Vec::new();
        while !input.is_empty() {
            let key = Ident::parse_any(input)?;
            match key.to_string().as_str() {
                "isa" => {
                    let list = parse_list(input, |s| isa_by_name(&Ident::parse_any(s)?))?;
                    if !list.iter().any(|d| d.name == "scalar") {
                        return Err(syn::Error::new(
                            key.span(),
                            "`isa(...)` must include `scalar`: it is the fallback every CPU runs",
                        ));
                    }
                    isas = Some(list);
                }
                "dims" => dims = Some(parse_dims(input, key.span())?),
                "reference" => {
                    input.parse::<Token![=]>()?;
                    reference = Some(input.parse()?);
                }
                "tolerance" => {
                    input.parse::<Token![=]>()?;
                    tolerance = Some(input.parse()?);
                }
                "cases" => {
                    input.parse::<Token![=]>()?;
                    cases = Some(input.parse()?);
                }
                "test" => {
                    tests = parse_list(input, |s| {
                        let name: Ident = s.parse()?;
                        s.parse::<Token![=]>()?;
                        Ok((name, s.parse()?))
                    })?;
                }
                "override" => {
                    overrides = parse_list(input, |s| {
                        let isa = isa_by_name(&Ident::parse_any(s)?)?;
                        s.parse::<Token![=]>()?;
                        Ok((isa, s.parse()?))
                    })?;
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown kernel option `{other}`: expected isa, dims, reference, tolerance, test, cases or override"
                        ),
                    ));
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        let isas = isas.ok_or_else(|| {
            input.error("missing `isa(...)`: list the ISAs to generate, e.g. `isa(scalar, avx2)`")
        })?;
        let reference = reference.ok_or_else(|| {
            input.error(
                "missing `reference = path`: every kernel is tested against a scalar reference",
            )
        })?;
        for (isa, path) in &overrides {
            if !isas.contains(isa) {
                return Err(syn::Error::new_spanned(
                    path,
                    format!(
                        "override for `{}`, which `isa(...)` does not list",
                        isa.name
                    ),
                ));
            }
        }
        Ok(KernelAttr {
            isas,
            dims,
            reference,
            tolerance,
            tests,
            cases,
            overrides,
        })
    }
}

/// A parameter of the kernel after the vocabulary: its name and type.
pub struct Param {
    /// The name (patterns other than plain identifiers are refused).
    pub name: Ident,
    /// The type.
    pub ty: Type,
}

/// The function the attribute is on, checked against the attribute.
pub struct KernelFn {
    /// The function as written (the macro keeps it as the generic body).
    pub item: ItemFn,
    /// The const parameters, in order.
    pub consts: Vec<Ident>,
    /// Parameters after the vocabulary.
    pub params: Vec<Param>,
    /// The return type.
    pub ret: ReturnType,
}

/// Checks `item` has the shape `fn f<V: Simd, const A: usize, ...>(v: V, args...)`
/// and agrees with `attr`.
pub fn kernel_fn(item: ItemFn, attr: &KernelAttr) -> syn::Result<KernelFn> {
    let sig = &item.sig;
    let mut vocab = None;
    let mut consts = Vec::new();
    for g in &sig.generics.params {
        match g {
            GenericParam::Type(t) if vocab.is_none() => vocab = Some(t.ident.clone()),
            GenericParam::Const(c) => consts.push(c.ident.clone()),
            other => {
                return Err(syn::Error::new_spanned(
                    other,
                    "a kernel takes one vocabulary type parameter (`V: Simd`) and `const` dimensions only",
                ));
            }
        }
    }
    let vocab = vocab.ok_or_else(|| {
        syn::Error::new_spanned(
            &sig.ident,
            "a kernel is generic over its vocabulary: add `<V: Simd>` and a first parameter `v: V`",
        )
    })?;
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Typed(p)) if matches!(&*p.ty, Type::Path(tp) if tp.path.is_ident(&vocab)) => {}
        Some(other) => {
            return Err(syn::Error::new_spanned(
                other,
                format!("the first parameter must be the vocabulary token, e.g. `v: {vocab}`"),
            ));
        }
        None => {
            return Err(syn::Error::new_spanned(
                &sig.ident,
                format!("the first parameter must be the vocabulary token, e.g. `v: {vocab}`"),
            ));
        }
    }
    let mut params = Vec::new();
    for arg in inputs {
        let FnArg::Typed(p) = arg else {
            return Err(syn::Error::new_spanned(arg, "a kernel cannot take `self`"));
        };
        let Pat::Ident(pi) = &*p.pat else {
            return Err(syn::Error::new_spanned(
                &p.pat,
                "kernel parameters must be plain names (the macro passes them on by name)",
            ));
        };
        params.push(Param {
            name: pi.ident.clone(),
            ty: (*p.ty).clone(),
        });
    }
    match &attr.dims {
        None if !consts.is_empty() => {
            return Err(syn::Error::new_spanned(
                &sig.generics,
                "const parameters need `dims(NAME = [...], dyn)` in the attribute",
            ));
        }
        Some(d) if d.names != consts => {
            return Err(syn::Error::new(
                d.span,
                format!(
                    "`dims` names ({}) must be the function's const parameters in order ({})",
                    join(&d.names),
                    join(&consts)
                ),
            ));
        }
        _ => {}
    }
    if !attr.tests.is_empty() {
        for p in &params {
            if !attr.tests.iter().any(|(n, _)| *n == p.name) {
                return Err(syn::Error::new(
                    p.name.span(),
                    format!(
                        "no test input for `{}`: add `{} = <expr>` to `test(...)`",
                        p.name, p.name
                    ),
                ));
            }
        }
        for (n, _) in &attr.tests {
            if !params.iter().any(|p| p.name == *n) {
                return Err(syn::Error::new(
                    n.span(),
                    format!("`test({n} = ...)` names no parameter of the kernel"),
                ));
            }
        }
    } else if !params.is_empty() {
        return Err(syn::Error::new(
            sig.ident.span(),
            "missing `test(...)`: give an input expression for every parameter \
             (they may use `rng` (a mutable `TestRng`) and the dimension names)",
        ));
    }
    Ok(KernelFn {
        ret: sig.output.clone(),
        item,
        consts,
        params,
    })
}

fn join(ids: &[Ident]) -> String {
    ids.iter()
        .map(Ident::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
