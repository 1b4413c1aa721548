//! Tokenizer speed on hostile inputs (1 MiB without spaces, 1 MiB of one byte, 100,000
//! special-token markers), both tokenizer kinds. The tests guard against quadratic
//! blow-ups; this measures the speed.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use woolly_model::gguf::GgufFile;
use woolly_model::paths::conformance_file;
use woolly_model::tokenizer::Tokenizer;

const MIB: usize = 1 << 20;

fn tokenizer(name: &str) -> Tokenizer {
    let file = GgufFile::open(conformance_file(&format!("vocab/ggml-vocab-{name}.gguf"))).unwrap();
    Tokenizer::from_gguf(&file).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut letters = String::with_capacity(MIB);
    let mut x = 0x2545_f491_u32;
    while letters.len() < MIB {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        letters.push(char::from(b'a' + (x % 26) as u8));
    }
    let inputs = [
        ("1MiB-no-spaces", letters, false),
        ("1MiB-one-byte", "a".repeat(MIB), false),
        ("100k-special-markers", "<s>".repeat(100_000), true),
    ];
    let mut group = c.benchmark_group("tokenize");
    group.sample_size(10);
    for name in ["llama-spm", "llama-bpe"] {
        let tok = tokenizer(name);
        for (input, text, special) in &inputs {
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::new(name, input), text, |b, text| {
                b.iter(|| tok.encode(text, false, *special).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
