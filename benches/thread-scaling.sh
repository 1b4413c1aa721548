#!/bin/bash
# Issue 6's thread-scaling figures, for a many-core machine that has no Rust toolchain:
# pp512 at 1 and N threads on the TinyLlama shape, tg128 and pp512 at N threads on the
# llama7b shape, the DRAM roofline, and llama.cpp's own llama-bench alternated with
# Woolly when it is given. Writes JSON and a log under $OUT (default /tmp/woolly-scaling).
#
# Build the kit on any x86-64 Linux host, statically linked so that it runs whatever the
# other machine's libc:
#   export RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static
#   cargo build --release --target x86_64-unknown-linux-gnu -p woolly-run -p xtask
#   KIT=target/scaling-kit; mkdir -p $KIT
#   cp target/static/x86_64-unknown-linux-gnu/release/{woolly-run,xtask} $KIT/
#   cp ../shared/conformance/vocab/ggml-vocab-llama-spm.gguf $KIT/vocab.gguf
# Optionally a static llama-bench in $KIT/llama-bench, from the llama.cpp sources in the
# llama-cpp-python 0.3.36 sdist (vendor/llama.cpp), configured with the flags of
# ../shared/peers/install-llama-cpp.sh plus -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF
# -DLLAMA_OPENSSL=OFF -DCMAKE_EXE_LINKER_FLAGS=-static, target llama-bench.
# Then, on the big machine: bash benches/thread-scaling.sh $KIT [THREADS]
# (about four minutes on 16 cores, writing two models, 4.7 GB, under $MODELS_DIR).
set -u
KIT=$(cd "${1:?usage: thread-scaling.sh KIT_DIR [THREADS]}" && pwd)
T=${2:-$(nproc)}
O=${OUT:-/tmp/woolly-scaling}
M=${MODELS_DIR:-/tmp/woolly-scaling-models}
mkdir -p "$O" "$M"
exec > >(tee "$O/log.txt") 2>&1
set -x
lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Core|L3'
# What each core delivers with 1, 2, 4.. threads busy: the ceiling of pp512's scaling.
"$KIT/xtask" clock | tee "$O/clock.txt"
for shape in tinyllama llama7b; do
  [ -f "$M/$shape.gguf" ] || "$KIT/xtask" make-model --shape $shape \
    --vocab-from "$KIT/vocab.gguf" --out "$M/$shape.gguf" || exit 1
done
# Written back now, not during the first timed run.
sync
"$KIT/xtask" roofline -t "$T" "$M/tinyllama.gguf" "$M/llama7b.gguf" | tee "$O/roofline.txt"
peer() { [ -x "$KIT/llama-bench" ] && timeout 300 "$KIT/llama-bench" "$@" -o json; }
# Generation at T threads, the two engines alternated (the first run also pages the file in).
for round in 1 2; do
  "$KIT/woolly-run" bench -m "$M/llama7b.gguf" -p 0 -n 128 -r 3 -t "$T" -o json \
    | tee "$O/woolly_llama7b_tg128_$round.json"
  peer -m "$M/llama7b.gguf" -p 0 -n 128 -r 3 -t "$T" > "$O/llama.cpp_llama7b_tg128_$round.json"
done
# Prompt processing: 1 thread against T.
"$KIT/woolly-run" bench -m "$M/tinyllama.gguf" -p 512 -n 0 -r 2 -t "1,$T" -o json \
  | tee "$O/woolly_tinyllama_pp512.json"
peer -m "$M/tinyllama.gguf" -p 512 -n 0 -r 2 -t "1,$T" > "$O/llama.cpp_tinyllama_pp512.json"
"$KIT/woolly-run" bench -m "$M/llama7b.gguf" -p 512 -n 0 -r 2 -t "$T" -o json \
  | tee "$O/woolly_llama7b_pp512.json"
peer -m "$M/llama7b.gguf" -p 512 -n 0 -r 2 -t "$T" > "$O/llama.cpp_llama7b_pp512.json"
grep -hE '"(n_threads|n_prompt|n_gen|avg_ts|stddev_ts)"' "$O"/llama.cpp_*.json
