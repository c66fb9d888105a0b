"""Times llama.cpp (through llama-cpp-python) on the CPU: ppN and tgM (default pp512 and tg128,
as `worker-orcd bench`), greedy, batch 1.

Usage: llamacpp_cpu_bench.py MODEL THREADS REPEATS [PP TG]. Called by llamacpp-cpu-bench.sh.
"""

import json
import random
import statistics
import sys
import time

import numpy as np
from llama_cpp import Llama

PP = int(sys.argv[4]) if len(sys.argv) > 4 else 512
TG = int(sys.argv[5]) if len(sys.argv) > 5 else 128


def main() -> None:
    model, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    llm = Llama(
        model_path=model,
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=PP + TG + 16,
        n_batch=PP,
        n_gpu_layers=0,
        verbose=False,
    )
    rng = random.Random(42)
    vocab = llm.n_vocab()
    prompt = [rng.randrange(vocab) for _ in range(PP)]

    # Warm-up, as `worker-orcd bench` does: one prompt token and 16 decode steps.
    llm.reset()
    llm.eval(prompt[:1])
    for _ in range(16):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])

    pp = []
    for _ in range(repeats):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        pp.append(PP / (time.perf_counter() - t))

    tg = []
    for _ in range(repeats):
        # One prompt token, then TG timed greedy steps (argmax on the host, as llama-bench's
        # tg test has no sampler at all, this adds a vocab-sized argmax per token).
        llm.reset()
        llm.eval(prompt[:1])
        t = time.perf_counter()
        for _ in range(TG):
            llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
        tg.append(TG / (time.perf_counter() - t))

    result = {
        "engine": "llama.cpp (llama-cpp-python)",
        "model": model,
        "threads": threads,
        "repeats": repeats,
        f"pp{PP}_tok_s": {"median": statistics.median(pp), "best": max(pp), "all": pp},
        f"tg{TG}_tok_s": {"median": statistics.median(tg), "best": max(tg), "all": tg},
    }
    print(f"pp{PP}: median {statistics.median(pp):.1f} tok/s, best {max(pp):.1f}")
    print(f"tg{TG}: median {statistics.median(tg):.1f} tok/s, best {max(tg):.1f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
