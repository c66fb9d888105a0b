// llama.cpp's token ids for a list of texts, in the `.inp`/`.out` shape of its vocabulary suites
// (`test-tokenizer-0`): the texts are separated by lines `__ggml_vocab_test__`, and one line of
// space-separated ids is printed per text. No BOS, special texts not parsed. Loads only the
// vocabulary of the GGUF file.
//
//   llamacpp-tokenize VOCAB.gguf TEXTS.inp > IDS.out
//
// Build against a llama.cpp build tree (see scripts/llamacpp-compare.sh):
//   g++ -O2 -std=c++17 scripts/llamacpp-tokenize.cpp -I$LCPP/include -I$LCPP/ggml/include \
//       -L$LCPP/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$LCPP/build/bin -o llamacpp-tokenize
#include "llama.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static void quiet_log(ggml_log_level, const char *, void *) {}

int main(int argc, char ** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s VOCAB.gguf TEXTS.inp\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[2], std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string all = ss.str();
    // As test-tokenizer-0 reads it: the newline before each marker is not part of the text, and
    // a file that ends with the marker has no empty text after it.
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> texts;
    for (size_t pos = 0;;) {
        size_t next = all.find(sep, pos);
        if (next == std::string::npos) {
            if (pos < all.size()) {
                texts.push_back(all.substr(pos));
            }
            break;
        }
        texts.push_back(all.substr(pos, next - pos));
        pos = next + sep.size();
    }

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) {
        std::fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    for (const std::string & t : texts) {
        std::vector<llama_token> ids(t.size() + 8);
        int n = llama_tokenize(vocab, t.data(), (int32_t) t.size(), ids.data(), (int32_t) ids.size(),
                               /*add_special=*/false, /*parse_special=*/false);
        if (n < 0) {
            ids.resize(-n);
            n = llama_tokenize(vocab, t.data(), (int32_t) t.size(), ids.data(), (int32_t) ids.size(),
                               false, false);
        }
        for (int i = 0; i < n; i++) {
            std::printf(i ? " %d" : "%d", ids[i]);
        }
        std::printf("\n");
    }
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
