// Tests of rkl.hpp as an application uses it, against the simulator
// (RKL_RUNTIME is set by the make rule; RKLLM_SIM_ABI picks the release).
// Prints "N passed, M failed" at the end.
#include <rkl.hpp>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
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
    for (const std::string &path : written) std::remove(path.c_str());
    std::cout << passed << " passed, " << failed << " failed" << std::endl;
    return failed ? 1 : 0;
}
