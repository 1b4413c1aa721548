//! `WOOLLY_ISA` and `WOOLLY_REQUIRE_ISA`, read from the environment. One test function, so
//! nothing else in this process reads the variables while it changes them.

use woolly_kernels::isa::IsaError;
use woolly_kernels::testing::for_each_isa;
use woolly_kernels::{Isa, Kernels};

fn set(key: &str, value: &str) {
    // SAFETY: this test binary has one test and no other threads touching the
    // environment.
    unsafe { std::env::set_var(key, value) };
}

#[test]
fn environment_forces_and_requires_isas() {
    // Forcing: every ISA this CPU has is accepted; others are refused by name.
    for isa in Isa::ALL {
        set("WOOLLY_ISA", isa.as_str());
        match Isa::from_env() {
            Ok(got) => assert_eq!(got, isa),
            Err(e) => {
                assert_eq!(e, IsaError::Unavailable(isa));
                assert!(e.to_string().contains(isa.as_str()), "{e}");
                assert!(!isa.is_available());
            }
        }
    }
    set("WOOLLY_ISA", "avx9000");
    let e = Isa::from_env().unwrap_err();
    assert!(e.to_string().contains("avx9000"), "{e}");
    set("WOOLLY_ISA", "");
    assert_eq!(Isa::from_env(), Ok(Isa::best()));

    // The free functions resolve once, honouring WOOLLY_ISA.
    set("WOOLLY_ISA", "scalar");
    assert_eq!(Kernels::detected().isa, Isa::Scalar);
    assert_eq!(Kernels::detected().rmsnorm.entry().isa, Isa::Scalar);

    // Requiring: an ISA that cannot run here turns its skip into a failure.
    let missing = Isa::ALL.into_iter().find(|isa| !isa.is_available());
    if let Some(missing) = missing {
        set("WOOLLY_REQUIRE_ISA", &format!("scalar,{missing}"));
        let r = std::panic::catch_unwind(|| for_each_isa("isa_env", |_| {}));
        assert!(r.is_err(), "requiring {missing} must fail here");
    }
    // Requiring only what runs here passes, and runs every available ISA.
    let available: Vec<String> = Isa::available().iter().map(|i| i.to_string()).collect();
    set("WOOLLY_REQUIRE_ISA", &available.join(","));
    let mut ran = Vec::new();
    for_each_isa("isa_env", |isa| ran.push(isa));
    assert_eq!(ran, Isa::available());
    set("WOOLLY_REQUIRE_ISA", "sse9");
    assert!(std::panic::catch_unwind(|| for_each_isa("isa_env", |_| {})).is_err());
}
