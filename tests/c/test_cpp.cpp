// The C++17 wrapper (rkl.hpp) against the simulator: RAII, exceptions,
// lambda callbacks, streams as ranges.
#include "harness.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

static const char *REPLY = "reply = R[{prompt}] ünï 🚀 日本語 end";

int main() {
    std::printf("rkl %s (C++ wrapper)\n", rkl::version().c_str());
    std::string path = model_file("plain", REPLY);
    std::string slow = model_file("slow", "reply = a long reply that goes on and on and on and on and on and on\ntime_scale = 0.05");

    run("generate_with_lambda", [&] {
        rkl::Model model(path);
        std::string text;
        rkl::Stats stats = model.generate("héllo", [&](std::string_view piece) { text.append(piece); });
        CHECK(text == "R[héllo] ünï 🚀 日本語 end");
        CHECK(stats.finish == RKL_FINISH_END);
        CHECK(model.complete("x") == "R[x] ünï 🚀 日本語 end");
    });

    run("lambda_returning_false_stops", [&] {
        rkl::Model model(path);
        int calls = 0;
        rkl::Stats stats = model.generate("x", [&](std::string_view) { return ++calls < 2; });
        CHECK(calls == 2);
        CHECK(stats.finish == RKL_FINISH_STOPPED);
    });

    run("exception_in_lambda_is_rethrown", [&] {
        rkl::Model model(path);
        bool caught = false;
        try {
            model.generate("x", [](std::string_view) { throw std::runtime_error("from the lambda"); });
        } catch (const std::runtime_error &e) {
            caught = std::strcmp(e.what(), "from the lambda") == 0;
        }
        CHECK(caught);
        CHECK(model.complete("again") == "R[again] ünï 🚀 日本語 end");
    });

    run("errors_are_exceptions", [&] {
        bool caught = false;
        try {
            rkl::Model model(std::string("/nonexistent/model.rkllm"));
        } catch (const rkl::Error &e) {
            caught = e.status() == RKL_MODEL_NOT_FOUND && std::strstr(e.what(), "/nonexistent/model.rkllm");
        }
        CHECK(caught);
        rkl::Model model(path);
        rkl::GenerateParams g("\xff");
        caught = false;
        try {
            model.generate(g, [](std::string_view) {});
        } catch (const rkl::Error &e) {
            caught = e.status() == RKL_INVALID_ARGUMENT && std::strstr(e.what(), "UTF-8");
        }
        CHECK(caught);
        model.close();
        caught = false;
        try {
            model.abort();
        } catch (const rkl::Error &e) {
            caught = e.status() == RKL_BAD_HANDLE;
        }
        CHECK(caught);
    });

    run("stream_as_range", [&] {
        rkl::Model model(path);
        std::string text;
        rkl::Stream stream = model.stream("range");
        for (std::string_view piece : stream) text.append(piece);
        CHECK(text == "R[range] ünï 🚀 日本語 end");
        CHECK(stream.stats().finish == RKL_FINISH_END);
    });

    run("stream_dropped_midway_and_moved", [&] {
        rkl::Model model(slow);
        {
            rkl::Stream stream = model.stream("drop");
            CHECK(stream.next().has_value());
            rkl::Stream moved = std::move(stream);
            CHECK(stream.get() == nullptr);
            CHECK(moved.next().has_value());
        }  // closed here: the run is aborted
        rkl::Stats stats{};
        std::string all = model.complete("after", &stats);
        CHECK(stats.finish == RKL_FINISH_END);
        CHECK(!all.empty());
    });

    run("abort_from_another_thread", [&] {
        rkl::Model model(slow);
        bool started = false;
        std::thread stopper;
        rkl::Stats stats = model.generate("x", [&](std::string_view) {
            if (!started) {
                started = true;
                stopper = std::thread([&] { model.abort(); });
            }
        });
        stopper.join();
        CHECK(stats.finish == RKL_FINISH_ABORTED);
    });

    run("open_params_and_info", [&] {
        rkl::OpenParams p(path.c_str());
        p.temperature = 0.5f;
        p.top_k = 10;
        rkl::Model model(p);
        rkl::ModelInfo info = model.info();
        CHECK(info.model_path == path);
        const char *abi = std::getenv("RKLLM_SIM_ABI");
        CHECK(info.family == (abi && *abi ? abi : "1.3"));
        model.set_chat_template("sys", "<u>", "</u>");
        model.clear_history();
        CHECK(model.kv_cache_tokens() == 0);
    });

    run("isolation_crash_restart", [&] {
        std::string crash = model_file("segv", "reply = R[{prompt}]\ntime_scale = 0\nfault = segv@token:2");
        rkl::OpenParams p(crash.c_str());
        p.set_isolated().set_call_timeout(std::chrono::seconds(30));
        rkl::Model model(p);
        CHECK(throws<rkl::RuntimeCrashed>(RKL_RUNTIME_CRASHED, [&] { model.complete("x"); }));
        model_file("segv", "reply = R[{prompt}]\ntime_scale = 0");
        model.restart();
        CHECK(model.complete("y") == "R[y]");
        rkl::Model in_process(path);
        CHECK(throws(RKL_NOT_SUPPORTED, [&] { in_process.restart(); }));
        std::remove(crash.c_str());
    });

    std::remove(path.c_str());
    std::remove(slow.c_str());
    return harness::finish();
}
