// Tests of rkl.hpp as an application uses it, against the simulator
// (RKL_RUNTIME is set by the make rule; RKLLM_SIM_ABI picks the release).
// Prints "N passed, M failed" at the end.
#include <rkl.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>
#include <unistd.h>

namespace {

int passed = 0, failed = 0, check_failures = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            ++check_failures;                                                           \
            std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK(" #cond ") failed\n"; \
        }                                                                               \
    } while (0)

void run(const char *name, const std::function<void()> &test) {
    check_failures = 0;
    try {
        test();
    } catch (const std::exception &e) {
        ++check_failures;
        std::cerr << name << ": unexpected exception: " << e.what() << "\n";
    }
    std::cout << (check_failures ? "FAIL " : "ok   ") << name << std::endl;
    (check_failures ? failed : passed)++;
}

// The simulator's reply is this template with {prompt} replaced.
const std::string kReply = "R[{prompt}] héllo wörld ✓ 🚀 日本語 ünïcödé, and a few more words to stream";

std::string expected(const std::string &prompt) {
    std::string text = kReply;
    text.replace(text.find("{prompt}"), 8, prompt);
    return text;
}

std::vector<std::string> written;  // removed at the end

std::string write_model(const std::string &name, const std::string &extra) {
    const char *dir = std::getenv("RKL_TEST_TMP");
    std::string path = std::string(dir && *dir ? dir : "/tmp") + "/" + std::to_string(getpid()) + "-" + name + ".sim";
    std::ofstream(path) << "RKLLM-SIM 1\nreply = " << kReply << "\n" << extra;
    written.push_back(path);
    return path;
}

std::string fast_model() { return write_model("fast", "time_scale = 0\n"); }
// About 4 ms per token (~50 tokens): long enough to stop mid-way.
std::string slow_model() {
    return write_model("slow", "time_scale = 1\nprefill_us_per_token = 1000\ndecode_us_per_token = 4000\n");
}

void test_generate_text() {
    rkl::Model model(fast_model());
    const char *abi = std::getenv("RKLLM_SIM_ABI");
    if (abi && *abi) CHECK(model.info().family == abi);
    std::string text;
    int pieces = 0;
    rkl::Stats stats = model.generate("hello", [&](std::string_view piece) {
        text += piece;
        pieces++;
    });
    CHECK(text == expected("hello"));
    CHECK(pieces > 3);
    CHECK(stats.finish == RKL_FINISH_END);
    CHECK(model.complete("again") == expected("again"));
}

void test_stream_text() {
    rkl::Model model(fast_model());
    rkl::Stream stream = model.stream("streamed");
    std::string text;
    for (std::string_view piece : stream) text += piece;
    CHECK(text == expected("streamed"));
    CHECK(stream.stats().finish == RKL_FINISH_END);
}

void test_token_limit_and_stop() {
    rkl::OpenParams params;
    std::string path = fast_model();
    params.model_path = path.c_str();
    params.max_new_tokens = 5;
    rkl::Model model(params);
    rkl::Stats stats = model.generate("limit", [](std::string_view) {});
    CHECK(stats.finish == RKL_FINISH_MAX_TOKENS && stats.tokens == 5);
    // A callback returning false stops the generation.
    int calls = 0;
    stats = model.generate("stop", [&](std::string_view) { return ++calls < 2; });
    CHECK(stats.finish == RKL_FINISH_STOPPED && calls == 2);
}

void test_abort_mid_stream() {
    rkl::Model model(slow_model());
    rkl::Stream stream = model.stream("abort me");
    std::string text;
    int pieces = 0;
    for (std::string_view piece : stream) {
        text += piece;
        if (++pieces == 2) model.abort();
    }
    CHECK(text.size() < expected("abort me").size());
    CHECK(expected("abort me").compare(0, text.size(), text) == 0);
    CHECK(stream.stats().finish == RKL_FINISH_ABORTED);

    // From inside the callback, and from another thread.
    rkl::Stats stats = model.generate("x", [&](std::string_view) { model.abort(); });
    CHECK(stats.finish == RKL_FINISH_ABORTED);
    std::atomic<bool> started{false};
    std::thread aborter([&] {
        while (!started) std::this_thread::yield();
        model.abort();
    });
    stats = model.generate("y", [&](std::string_view) { started = true; });
    aborter.join();
    CHECK(stats.finish == RKL_FINISH_ABORTED);
    // An exception from the callback stops the generation and comes back.
    bool caught = false;
    try {
        model.generate("z", [](std::string_view) { throw std::runtime_error("from the callback"); });
    } catch (const std::runtime_error &e) {
        caught = std::string(e.what()) == "from the callback";
    }
    CHECK(caught);
}

void test_bad_model_path() {
    try {
        rkl::Model model(std::string("/nonexistent/model.rkllm"));
        CHECK(false && "opened a missing model");
    } catch (const rkl::Error &e) {
        CHECK(e.status() == RKL_MODEL_NOT_FOUND);
        CHECK(std::string(e.what()).find("/nonexistent/model.rkllm") != std::string::npos);
    }
}

void test_use_after_close() {
    rkl::Model model(fast_model());
    rkl::Stream orphan = model.stream("orphan");
    model.close();
    model.close();  // twice: harmless
    try {
        model.complete("x");
        CHECK(false && "generated on a closed model");
    } catch (const rkl::Error &e) {
        CHECK(e.status() == RKL_BAD_HANDLE);
    }
    try {
        model.abort();
        CHECK(false && "aborted a closed model");
    } catch (const rkl::Error &e) {
        CHECK(e.status() == RKL_BAD_HANDLE);
    }
    // The stream outlives its model and reports the end.
    while (orphan.next()) {
    }
    CHECK(orphan.stats().finish == RKL_FINISH_ABORTED || orphan.stats().finish == RKL_FINISH_END);
    // A moved-from model is empty, and using it is an error too.
    rkl::Model a(fast_model());
    rkl::Model b(std::move(a));
    CHECK(b.complete("moved") == expected("moved"));
    try {
        a.complete("x");  // NOLINT(bugprone-use-after-move): on purpose
        CHECK(false && "generated on a moved-from model");
    } catch (const rkl::Error &e) {
        CHECK(e.status() == RKL_BAD_HANDLE);
    }
}

void test_concurrent_generations() {
    rkl::Model model(slow_model());
    std::string texts[2];
    rkl::Stats stats[2];
    const char *prompts[2] = {"first", "second"};
    std::thread threads[2];
    for (int i = 0; i < 2; i++) {
        threads[i] = std::thread([&, i] { texts[i] = model.complete(prompts[i], &stats[i]); });
    }
    for (auto &t : threads) t.join();
    for (int i = 0; i < 2; i++) {
        CHECK(texts[i] == expected(prompts[i]));
        CHECK(stats[i].finish == RKL_FINISH_END);
    }
    // One queued for about as long as the other ran.
    const rkl::Stats &a = stats[0].queue_ms < stats[1].queue_ms ? stats[0] : stats[1];
    const rkl::Stats &b = stats[0].queue_ms < stats[1].queue_ms ? stats[1] : stats[0];
    CHECK(b.queue_ms >= 0.7 * (a.total_ms - a.queue_ms));
}

// Runs `f`, which must throw E with status `want`; false otherwise.
template <class E, class F>
bool throws(rkl_status want, F f, const char *needle = "") {
    try {
        f();
    } catch (const E &e) {
        bool ok = e.status() == want && std::string(e.what()).find(needle) != std::string::npos;
        if (!ok) std::cerr << "  got status " << e.status() << ": " << e.what() << "\n";
        return ok;
    } catch (const std::exception &e) {
        std::cerr << "  got another exception: " << e.what() << "\n";
        return false;
    }
    std::cerr << "  nothing was thrown\n";
    return false;
}

const char *kFast = "time_scale = 0\n";

rkl::Model open_isolated(const std::string &path, std::chrono::milliseconds timeout = {}, int max_restarts = 3) {
    rkl::OpenParams params(path.c_str());
    params.set_isolated().set_call_timeout(timeout).set_max_restarts(max_restarts);
    return rkl::Model(params);
}

void test_open_setters() {
    rkl::OpenParams p;
    CHECK(p.flags == 0 && p.call_timeout_ms == 0 && p.abort_grace_ms == 0 && p.max_restarts == 0);
    p.set_isolated().set_call_timeout(std::chrono::seconds(2)).set_abort_grace(std::chrono::milliseconds(150));
    CHECK(p.flags == RKL_OPEN_ISOLATED && p.call_timeout_ms == 2000 && p.abort_grace_ms == 150);
    CHECK(p.set_max_restarts(5).max_restarts == 5);
    CHECK(p.set_max_restarts(0).max_restarts == -1);  // never, not the C field's "default"
    CHECK(p.set_isolated(false).flags == 0);
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { p.set_call_timeout(std::chrono::milliseconds(-1)); }));
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { p.set_abort_grace(std::chrono::hours(2000)); }));
    CHECK(p.call_timeout_ms == 2000 && p.abort_grace_ms == 150);  // unchanged by the refusals
    // A flag the library does not know is refused by name.
    std::string path = fast_model();
    p.model_path = path.c_str();
    p.flags = 2;
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { rkl::Model m(p); }, "flags"));
}

void test_typed_errors() {
    // Statuses 16..21 and 26 are rkl::CacheError, 22..24 have their own
    // classes, the others (25 too) are plain rkl::Error; all carry status
    // and message.
    for (int n = 1; n <= 26; n++) {
        auto status = static_cast<rkl_status>(n);
        try {
            rkl::detail::raise(status, "why");
        } catch (const rkl::Error &e) {
            bool cache = dynamic_cast<const rkl::CacheError *>(&e) != nullptr;
            bool aborted = dynamic_cast<const rkl::Aborted *>(&e) != nullptr;
            bool crashed = dynamic_cast<const rkl::RuntimeCrashed *>(&e) != nullptr;
            bool timeout = dynamic_cast<const rkl::RuntimeTimeout *>(&e) != nullptr;
            CHECK(cache == ((n >= RKL_CACHE_NOT_FOUND && n <= RKL_CACHE_MISMATCH) || n == RKL_CACHE_UNTRUSTED));
            CHECK(aborted == (n == RKL_ABORTED));
            CHECK(crashed == (n == RKL_RUNTIME_CRASHED));
            CHECK(timeout == (n == RKL_RUNTIME_TIMEOUT));
            CHECK(e.status() == status && std::string(e.what()) == "why");
        }
        CHECK(std::string(rkl_status_str(n)) != "unknown status");
    }
    // Without a message of the library's, the status text stands in.
    CHECK(std::string(rkl::Error(RKL_RUNTIME_TIMEOUT, "").what()) == rkl_status_str(RKL_RUNTIME_TIMEOUT));
    // From real calls.
    CHECK(throws<rkl::CacheError>(RKL_CACHE_NOT_FOUND, [] { rkl::cache_inspect("/nonexistent/x.rklcache"); }));
    rkl::Model model(fast_model());
    CHECK(throws<rkl::Error>(RKL_NOT_SUPPORTED, [&] { model.restart(); }));
}

void test_cache_errors_are_typed() {
    const char *dir = std::getenv("RKL_TEST_TMP");
    std::string path = std::string(dir && *dir ? dir : "/tmp") + "/" + std::to_string(getpid()) + "-sys.rklcache";
    const std::string system = "You are a terse assistant for Rockchip boards. ";
    std::string model_path = write_model("cache", "time_scale = 0\nkv_bytes_per_token = 64\n");
    std::string other_path = write_model("cache-other", "time_scale = 0\nkv_bytes_per_token = 64\nname = other\n");
    rkl::CacheInfo saved;
    {
        rkl::Model model(model_path);
        saved = model.cache_save(system, path);
    }
    CHECK(saved.valid() && saved.save_stats.has_value());
    saved.check();  // valid: returns
    rkl::Model model(model_path);
    CHECK(model.cache_load(path).prompt_hash == saved.prompt_hash);
    rkl::Stats stats;
    CHECK(model.complete(system + "NPU?", &stats) == expected("NPU?"));
    CHECK(throws<rkl::CacheError>(RKL_CACHE_MISMATCH, [&] { model.complete("NPU?"); }));
    rkl::Model other(other_path);
    CHECK(throws<rkl::CacheError>(RKL_CACHE_MISMATCH, [&] { other.cache_load(path); }));
    // A corrupt payload: inspect reports it, check() and load throw it.
    {
        std::fstream f(saved.payload_path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(saved.payload_size / 2));
        f.put('\x5a');
    }
    rkl::CacheInfo seen = rkl::cache_inspect(path);
    CHECK(seen.verdict == RKL_VERDICT_INVALID && seen.verdict_status == RKL_CACHE_CORRUPT);
    CHECK(throws<rkl::CacheError>(RKL_CACHE_CORRUPT, [&] { seen.check(); }));
    rkl::Model fresh(model_path);
    CHECK(throws<rkl::CacheError>(RKL_CACHE_CORRUPT, [&] { fresh.cache_load(path); }));
    std::remove(saved.payload_path.c_str());
    std::remove(path.c_str());
}

// Per-request sampling: a 1.3 runtime samples the request with the set
// fields over the model's values (the simulator's {sampling} shows what the
// run got); a 1.2 runtime refuses them.
void test_sampling() {
    std::string path = write_model("sampling", kFast);                      // removed at the end...
    std::ofstream(path) << "RKLLM-SIM 1\nreply = [{sampling}]\n" << kFast;  // ...with its own reply
    rkl::OpenParams open(path.c_str());
    open.top_k = 7;
    rkl::Model model(open);
    rkl::SamplingParams sampling;
    CHECK(sampling.top_k == RKL_UNSET && sampling.temperature != sampling.temperature);
    sampling.temperature = 0.25f;
    rkl::GenerateParams params("x");
    CHECK(params.sampling == nullptr);
    params.set_sampling(sampling);
    CHECK(params.sampling == &sampling);
    auto collect = [&](const rkl_generate_params &p) {
        std::string text;
        model.generate(p, [&](std::string_view piece) { text += piece; });
        return text;
    };
    if (model.info().family == "1.3") {
        std::string text = collect(params);
        CHECK(text.find("temperature=0.25") != std::string::npos);
        CHECK(text.find("top_k=7 top_p=0.9 ") != std::string::npos);
        std::string streamed;
        for (std::string_view piece : model.stream(params)) streamed += piece;
        CHECK(streamed.find("temperature=0.25") != std::string::npos);
    } else {
        CHECK(throws<rkl::Error>(RKL_NOT_SUPPORTED, [&] { collect(params); }, "1.3"));
        CHECK(throws<rkl::Error>(RKL_NOT_SUPPORTED, [&] { model.stream(params); }));
    }
    CHECK(collect(rkl::GenerateParams("x")) == "[init]");
    sampling.top_p = 2.0f;
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { collect(params); }, "top_p"));
}

void test_automatic_caching() {
    const char *tmp = std::getenv("RKL_TEST_TMP");
    std::string dir = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + std::to_string(getpid()) + "-auto";
    std::filesystem::remove_all(dir);  // fresh: made by the Model
    const std::string system = "You are a terse assistant for Rockchip boards. ";
    std::string model_path = write_model("auto", "time_scale = 0\nkv_bytes_per_token = 64\n");
    {
        rkl::OpenParams params(model_path.c_str());
        params.set_cache_dir(dir.c_str()).set_cache_max_bytes(64u << 20);
        rkl::Model model(params);
        // A callback generation: the first saves the prefix's cache; the
        // runtime sees only the question.
        std::string prompt = system + "NPU?";
        std::string text;
        rkl::Stats stats = model.generate(rkl::GenerateParams(prompt.c_str()).set_cache_prefix(system),
                                          [&](std::string_view piece) { text += piece; });
        CHECK(stats.cache_use == RKL_CACHE_USE_SAVED);
        CHECK(text == expected("NPU?"));
        CHECK(!std::filesystem::is_empty(dir));
        // A pull stream with the same prefix finds it.
        std::string again = system + "GPU?";
        rkl::Stream stream = model.stream(rkl::GenerateParams(again.c_str()).set_cache_prefix(system));
        text.clear();
        for (std::string_view piece : stream) text += piece;
        CHECK(text == expected("GPU?"));
        CHECK(stream.stats().cache_use == RKL_CACHE_USE_HIT);
        // No prefix: none, and the whole prompt runs.
        CHECK(model.complete("NPU?", &stats) == expected("NPU?"));
        CHECK(stats.cache_use == RKL_CACHE_USE_NONE);
        // A prefix that does not start the prompt is refused before anything runs.
        std::string question = "NPU?";
        CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT,
                                 [&] { rkl::GenerateParams(question.c_str()).set_cache_prefix(system); }, "prefix"));
        // The whole prompt is no prefix either (librkl's check).
        CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] {
            model.generate(rkl::GenerateParams(system.c_str()).set_cache_prefix(system), [](std::string_view) {});
        }));
    }
    // A cap without a directory is refused.
    rkl::OpenParams capped(model_path.c_str());
    capped.set_cache_max_bytes(1);
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { rkl::Model m(capped); }, "cache_dir"));
    std::filesystem::remove_all(dir);
}

std::string collect(rkl::Model &model, const rkl_generate_params &params) {
    std::string text;
    model.generate(params, [&](std::string_view piece) { text += piece; });
    return text;
}

template <class E, class F>
bool throws_std(F f) {
    try {
        f();
    } catch (const E &) {
        return true;
    }
    return false;
}

// --- Other inputs and the float outputs (sim/README.md, "The reply" and
// "Infer modes"): the simulator echoes what arrived through {input}. ---

constexpr std::size_t kDim = 8;

std::string inputs_model(const std::string &name, const std::string &reply) {
    std::string path = write_model(name, "");
    std::ofstream(path) << "RKLLM-SIM 1\nreply = " << reply << "\nhidden_size = 8\nvocab_size = 50\ntime_scale = 0\n";
    return path;
}

std::string fnv(const void *data, std::size_t n, std::uint64_t h = 0xcbf29ce484222325ull) {
    const unsigned char *bytes = static_cast<const unsigned char *>(data);
    for (std::size_t i = 0; i < n; i++) h = (h ^ bytes[i]) * 0x100000001b3ull;
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
    return text;
}

template <class T>
std::string fnv(const std::vector<T> &values) {
    return fnv(values.data(), values.size() * sizeof(T));
}

// The simulator's element [t][j] for an input whose hash is `hash`.
float sim_value(const std::string &hash, std::uint32_t t, std::uint32_t j) {
    std::uint64_t x = std::stoull(hash, nullptr, 16);
    std::uint32_t seed = static_cast<std::uint32_t>(x ^ (x >> 32));
    return (static_cast<float>((seed + 131u * t + 7u * j) % 2003u) - 1001.0f) / 1024.0f;
}

std::vector<float> floats(std::size_t n, float salt = 0.0f) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; i++) v[i] = static_cast<float>(i) * 0.25f - salt;
    return v;
}

// A view of a temporary would dangle in the params: refused at compile time.
static_assert(std::is_constructible_v<rkl::Span<const float>, std::vector<float> &>);
static_assert(std::is_constructible_v<rkl::Span<const float>, const std::vector<float> &>);
static_assert(!std::is_constructible_v<rkl::Span<const float>, std::vector<float> &&>);
static_assert(!std::is_constructible_v<rkl::Span<const float>, std::vector<double> &>);
static_assert(!std::is_constructible_v<rkl::Span<float>, const std::vector<float> &>);

void test_tokens_and_embeddings() {
    rkl::Model model(inputs_model("tokens", "[{input}|{prefill}]"));
    std::vector<std::int32_t> ids{3, 1, 4, 1, 5};
    std::string want = "[tokens n=5 fnv=" + fnv(ids) + "|5]";
    rkl::GenerateParams params;
    CHECK(collect(model, params.set_tokens(ids)) == want);
    std::int32_t raw[] = {3, 1, 4, 1, 5};
    CHECK(collect(model, rkl::GenerateParams().set_tokens(raw)) == want);
    CHECK(collect(model, rkl::GenerateParams().set_tokens({raw, 5})) == want);

    std::vector<float> rows = floats(3 * kDim, 1.0f);
    want = "[embed n=3 dim=8 fnv=" + fnv(rows) + "|3]";
    rkl::GenerateParams embed;
    embed.set_embeddings(rows, kDim);
    CHECK(embed.prompt == nullptr && embed.n_embedding_tokens == 3);
    CHECK(collect(model, embed) == want);
    std::string streamed;
    for (std::string_view piece : model.stream(embed)) streamed += piece;
    CHECK(streamed == want);

    // Shapes: rows must be whole, dim not 0; empty inputs are the library's to refuse.
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { rkl::GenerateParams().set_embeddings(rows, 5); }, "whole rows"));
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { rkl::GenerateParams().set_embeddings(rows, 0); }));
    std::vector<std::int32_t> none;
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { collect(model, rkl::GenerateParams().set_tokens(none)); }));
    std::vector<std::int32_t> negative{1, -2};
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { collect(model, rkl::GenerateParams().set_tokens(negative)); }));
}

void test_images_and_videos() {
    rkl::OpenParams open(nullptr);
    std::string path = inputs_model("images", "[{input}|{prompt}]");
    open.model_path = path.c_str();
    open.set_image_tags("<|vs|>", "<|ve|>", "<|pad|>").set_video_tags("<v>", "</v>", "<vp>");
    rkl::Model model(open);

    std::vector<float> values = floats(2 * 4 * kDim, 0.5f);
    std::string prompt = "<image><image>Compare.";
    rkl::MediaInput images = rkl::MediaInput::images(values, 2, 4, kDim).set_pixels(448, 336);
    std::string hashed = prompt + std::string(reinterpret_cast<const char *>(values.data()), values.size() * 4);
    std::string want = "[multimodal images=2 tokens=4 size=448x336 tags=<|vs|>|<|ve|>|<|pad|> fnv=" +
                       fnv(hashed.data(), hashed.size()) + "|" + prompt + "]";
    CHECK(collect(model, rkl::GenerateParams(prompt.c_str()).set_images(images)) == want);
    // One marker per image: the library counts them.
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT,
                             [&] { collect(model, rkl::GenerateParams("<image>").set_images(images)); }, "marker"));
    // The view must hold exactly the shape's values, and the shape must not overflow.
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { rkl::MediaInput::images(values, 3, 4, kDim); }, "needs"));
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT,
                             [&] { rkl::MediaInput::videos(values, SIZE_MAX / 2, 3, 4, kDim); }, "overflows"));

    std::vector<float> frames = floats(2 * 3 * 2 * kDim);
    rkl::MediaInput videos = rkl::MediaInput::videos(frames, 2, 3, 2, kDim).set_pixels(64, 48);
    rkl::GenerateParams video_request("<video>and<video>");
    video_request.set_videos(videos);
    const char *abi = std::getenv("RKLLM_SIM_ABI");
    if (abi && std::string(abi) == "1.2") {
        CHECK(throws<rkl::Error>(RKL_NOT_SUPPORTED, [&] { collect(model, video_request); }, "1.3"));
    } else {
        CHECK(collect(model, video_request).find("videos=2 frames=3 frame_tokens=2 frame=64x48 video_tags=<v>|</v>|<vp>") !=
              std::string::npos);
    }
}

void test_hidden_states_and_logits() {
    rkl::Model model(inputs_model("outputs", "never generated"));
    std::string prompt = "Embed this sentence.";
    std::string hash = fnv(prompt.data(), prompt.size());
    rkl::Tensor hidden = model.hidden_states(prompt);
    // The prefilled text is "<user>" + prompt + "</user><assistant>", a token per 4 characters.
    std::size_t tokens = (std::string("<user>").size() + prompt.size() + std::string("</user><assistant>").size() + 3) / 4;
    CHECK(hidden.tokens() == tokens && hidden.dim() == kDim && hidden.values().size() == tokens * kDim);
    CHECK(hidden.row(0)[0] == sim_value(hash, 0, 0));
    CHECK(hidden.row(0)[kDim - 1] == sim_value(hash, 0, kDim - 1));
    CHECK(hidden.row(tokens - 1)[3] == sim_value(hash, static_cast<std::uint32_t>(tokens - 1), 3));
    CHECK(hidden.row(1).data() == hidden.values().data() + kDim);
    CHECK(throws_std<std::out_of_range>([&] { hidden.row(tokens); }));
    CHECK(hidden.stats().tokens == 0 && hidden.stats().prefill_tokens == tokens);

    // Moved, the floats go with the new owner; the old one is empty.
    rkl::Tensor moved = std::move(hidden);
    CHECK(moved.tokens() == tokens && hidden.tokens() == 0 && hidden.values().empty());
    CHECK(moved.stats().prefill_tokens == tokens);
    float sum = 0;
    for (float v : moved.values()) sum += v;
    CHECK(sum != 0);

    rkl::Tensor logits = model.logits(prompt);
    CHECK(logits.tokens() == 1 && logits.dim() == 50);
    CHECK(logits.row(0)[49] == sim_value(hash, 0, 49));

    std::vector<float> rows = floats(2 * kDim, 3.0f);
    rkl::Tensor from_rows = model.hidden_states(rkl::GenerateParams().set_embeddings(rows, kDim));
    CHECK(from_rows.tokens() == 2 && from_rows.row(1)[1] == sim_value(fnv(rows), 1, 1));
    std::vector<std::int32_t> ids{7, 8, 9};
    CHECK(model.logits(rkl::GenerateParams().set_tokens(ids)).values()[5] == sim_value(fnv(ids), 0, 5));
    CHECK(model.complete("x") == "never generated");
}

void test_cross_attention() {
    rkl::OpenParams open;
    std::string path = inputs_model("cross", "[{cross_attn}]");
    open.model_path = path.c_str();
    rkl::Model model(open.set_cross_attn());
    std::vector<float> k = floats(3 * 32), v = floats(3 * 32, 1.0f), mask = floats(3);
    std::vector<std::int32_t> positions{0, 1, 2};
    rkl::CrossAttnParams state(k, v, mask, positions);
    CHECK(state.num_tokens == 3 && state.cache_floats == 96);
    std::vector<unsigned char> raw;
    auto append = [&](const void *p, std::size_t n) {
        raw.insert(raw.end(), static_cast<const unsigned char *>(p), static_cast<const unsigned char *>(p) + n);
    };
    append(k.data(), k.size() * 4);
    append(v.data(), v.size() * 4);
    append(mask.data(), mask.size() * 4);
    append(positions.data(), positions.size() * 4);
    std::string want = "[tokens=3 fnv=" + fnv(raw) + "]";
    CHECK(collect(model, rkl::GenerateParams("x").set_cross_attn(state)) == want);
    CHECK(model.complete("y") == want);  // the runtime keeps the state
    std::vector<float> short_v(v.begin(), v.begin() + 3);
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { rkl::CrossAttnParams(k, short_v, mask, positions); }));
    std::vector<float> short_mask(mask.begin(), mask.begin() + 2);
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT, [&] { rkl::CrossAttnParams(k, v, short_mask, positions); }));

    rkl::Model plain(inputs_model("plain", "x"));
    CHECK(throws<rkl::Error>(RKL_INVALID_ARGUMENT,
                             [&] { collect(plain, rkl::GenerateParams("x").set_cross_attn(state)); }, "use_cross_attn"));
}

void test_isolated_generate() {
    rkl::Model model = open_isolated(fast_model());
    CHECK(model.complete("isolated") == expected("isolated"));
    std::string text;
    for (std::string_view piece : model.stream("streamed")) text += piece;
    CHECK(text == expected("streamed"));
    model.restart();
    CHECK(model.complete("again") == expected("again"));
}

void test_isolated_crash_is_survived() {
    std::string path = write_model("segv", std::string(kFast) + "fault = segv@token:3\n");
    rkl::Model model = open_isolated(path);
    std::string text;
    CHECK(throws<rkl::RuntimeCrashed>(RKL_RUNTIME_CRASHED, [&] {
        model.generate("crash", [&](std::string_view piece) { text += piece; });
    }, "died of SIGSEGV"));
    CHECK(expected("crash").compare(0, text.size(), text) == 0);
    // The fault gone from the model file, the next call restarts the worker.
    write_model("segv", kFast);
    CHECK(model.complete("alive") == expected("alive"));
}

void test_isolated_hang_times_out() {
    std::string path = write_model("hang", std::string(kFast) + "fault = hang@prefill\n");
    rkl::Model model = open_isolated(path, std::chrono::milliseconds(300));
    CHECK(throws<rkl::RuntimeTimeout>(RKL_RUNTIME_TIMEOUT, [&] { model.complete("hang"); }, "300 ms"));
    write_model("hang", kFast);
    model.restart();
    CHECK(model.complete("after") == expected("after"));
}

void test_restart_policy() {
    std::string path = write_model("policy", std::string(kFast) + "fault = abort@prefill\n");
    rkl::Model model = open_isolated(path, {}, 0);
    CHECK(throws<rkl::RuntimeCrashed>(RKL_RUNTIME_CRASHED, [&] { model.complete("one"); }, "SIGABRT"));
    write_model("policy", kFast);
    // Never restarted automatically: down until restart().
    CHECK(throws<rkl::RuntimeCrashed>(RKL_RUNTIME_CRASHED, [&] { model.complete("two"); }));
    model.restart();
    CHECK(model.complete("three") == expected("three"));
}

}  // namespace

int main() {
    std::cout << "rkl " << rkl::version() << " from C++" << std::endl;
    run("generate_text", test_generate_text);
    run("stream_text", test_stream_text);
    run("token_limit_and_stop", test_token_limit_and_stop);
    run("abort_mid_stream", test_abort_mid_stream);
    run("bad_model_path", test_bad_model_path);
    run("use_after_close", test_use_after_close);
    run("concurrent_generations", test_concurrent_generations);
    run("open_setters", test_open_setters);
    run("typed_errors", test_typed_errors);
    run("cache_errors_are_typed", test_cache_errors_are_typed);
    run("automatic_caching", test_automatic_caching);
    run("sampling", test_sampling);
    run("tokens_and_embeddings", test_tokens_and_embeddings);
    run("images_and_videos", test_images_and_videos);
    run("hidden_states_and_logits", test_hidden_states_and_logits);
    run("cross_attention", test_cross_attention);
    run("isolated_generate", test_isolated_generate);
    run("isolated_crash_is_survived", test_isolated_crash_is_survived);
    run("isolated_hang_times_out", test_isolated_hang_times_out);
    run("restart_policy", test_restart_policy);
    for (const std::string &path : written) std::remove(path.c_str());
    std::cout << passed << " passed, " << failed << " failed" << std::endl;
    return failed ? 1 : 0;
}
