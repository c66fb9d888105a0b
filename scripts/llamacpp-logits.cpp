// llama.cpp's logits for a token sequence, teacher-forced, in the JSON shape that
// `worker-orcd score --json` prints: {"positions": [[[id, logit], ...], ...]}, one list of the
// best K candidates per input position. Lets both engines score the same GGUF file on the same
// machine (llama.cpp's CUDA build on the GPU machine, its CPU build here).
//
//   llamacpp-logits MODEL IDS TOPK [N_GPU_LAYERS [N_CTX]]   (IDS: comma-separated token ids;
//   N_CTX: the context llama.cpp is given, which picks e.g. Phi-3's long or short RoPE factors)
//
// Build against a llama.cpp build tree (see scripts/llamacpp-compare.sh):
//   g++ -O2 -std=c++17 scripts/llamacpp-logits.cpp -I$LCPP/include -I$LCPP/ggml/include \
//       -L$LCPP/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$LCPP/build/bin -o llamacpp-logits
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static void quiet_log(ggml_log_level, const char *, void *) {}

int main(int argc, char ** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s MODEL IDS TOPK [N_GPU_LAYERS [N_CTX]]\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    std::vector<llama_token> ids;
    for (std::string s = argv[2]; !s.empty();) {
        size_t comma = s.find(',');
        ids.push_back((llama_token) std::stol(s.substr(0, comma)));
        s = comma == std::string::npos ? "" : s.substr(comma + 1);
    }
    const int top = std::atoi(argv[3]);
    const int ngl = argc > 4 ? std::atoi(argv[4]) : 0;
    const size_t n_ctx = argc > 5 ? (size_t) std::atol(argv[5]) : 0;

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = ngl;
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) {
        std::fprintf(stderr, "cannot load %s\n", path);
        return 1;
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) std::max<size_t>({ids.size(), 16, n_ctx});
    cp.n_batch = (uint32_t) std::max<size_t>(ids.size(), 16);
    cp.n_ubatch = cp.n_batch;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        std::fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    llama_batch batch = llama_batch_init((int32_t) ids.size(), 0, 1);
    for (size_t i = 0; i < ids.size(); i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = (llama_pos) i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = (int32_t) ids.size();
    if (llama_decode(ctx, batch) != 0) {
        std::fprintf(stderr, "llama_decode failed\n");
        return 1;
    }

    std::printf("{\"positions\":[");
    std::vector<int> order(n_vocab);
    for (size_t i = 0; i < ids.size(); i++) {
        const float * row = llama_get_logits_ith(ctx, (int32_t) i);
        for (int t = 0; t < n_vocab; t++) order[t] = t;
        const int k = std::min(top, n_vocab);
        std::partial_sort(order.begin(), order.begin() + k, order.end(),
                          [row](int a, int b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
        std::printf(i ? ",[" : "[");
        for (int j = 0; j < k; j++) std::printf(j ? ",[%d,%.9g]" : "[%d,%.9g]", order[j], row[order[j]]);
        std::printf("]");
    }
    std::printf("]}\n");
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
