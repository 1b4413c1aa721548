#!/usr/bin/env python3
"""llama.cpp, as built on this machine (../shared/peers/install-llama-cpp.sh), scored against
the conformance pack's golden outputs (made by another llama.cpp build) by the criteria Woolly
is held to: last-prompt NRMSE, greedy 16 tokens, teacher-forced argmax at margin >= 0.1.
Shows how far the bounds are from ggml's own variation between builds and options.

  python3 woolly-model/tests/llama_cpp_self_conformance.py [SmolLM2.gguf]
"""
import json, os, sys
import numpy as np
sys.path.insert(0, os.environ.get("WOOLLY_PEER_SITE", "/opt/woolly-peers/site"))
import llama_cpp
C = os.environ.get("WOOLLY_CONFORMANCE_DIR", "../shared/conformance")
models = {"tiny-q4km": f"{C}/models/tiny-q4km.gguf",
          "SmolLM2-135M-Instruct.Q4_1": sys.argv[1] if len(sys.argv) > 1 else
              os.path.expanduser("~/.cache/woolly/models/SmolLM2-135M-Instruct.Q4_1.gguf")}
for fa in (False, True):
    for name, path in models.items():
        g = json.load(open(f"{C}/golden/{name}.golden.json"))
        m = llama_cpp.Llama(path, n_ctx=512, n_batch=512, n_threads=2, n_threads_batch=2,
                            logits_all=True, flash_attn=fa, verbose=False)
        nrmse, greedy_ok, agree, total = [], 0, 0, 0
        for case in g["cases"]:
            toks = case["tokens"]; n = len(toks)
            ref = np.fromfile(f"{C}/golden/{case['last_prompt_logits_f32']}", dtype="<f4")
            m.reset(); m.eval(toks)
            row = np.array(m.scores[n - 1], dtype=np.float64)
            nrmse.append(float(np.sqrt(np.mean((row - ref) ** 2)) / np.std(ref)))
            out = []
            for _ in range(16):
                t = int(np.argmax(m.scores[m.n_tokens - 1])); out.append(t); m.eval([t])
            greedy_ok += out == case["greedy"][:16]
            # teacher-forced argmax agreement over tokens + greedy
            seq = toks + case["greedy"]
            m.reset(); m.eval(seq)
            for j, top in enumerate(case["top10_logits_per_position"]):
                if len(top) < 2 or top[0][1] - top[1][1] < 0.1: continue
                total += 1; agree += int(np.argmax(m.scores[j])) == top[0][0]
        print(f"flash_attn={fa} {name}: NRMSE per case {[round(x,4) for x in nrmse]} worst {max(nrmse):.4f}; "
              f"greedy 16 {greedy_ok}/{len(g['cases'])}; argmax {agree}/{total}", flush=True)
        del m
