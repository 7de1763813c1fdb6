// A tiny harness for the C++ tests of rkl.hpp (the C tests use harness.h):
// CHECK inside a test, run("name", lambda) in main, throws<E>(status, f)
// for expected exceptions, model_file() for simulator models, and finish()
// for the closing "N passed, M failed" line and the exit code.
// Single-threaded bookkeeping: call CHECK only on the main thread.
#ifndef RKL_TEST_HARNESS_HPP
#define RKL_TEST_HARNESS_HPP

#include <rkl.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include <unistd.h>

namespace harness {

inline int passed, failed, failures;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            ::harness::failures++;                                                         \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
        }                                                                                  \
    } while (0)

// Runs one test; an exception escaping it is a failure.
template <class F>
void run(const char *name, F test) {
    failures = 0;
    try {
        test();
    } catch (const std::exception &e) {
        failures++;
        std::fprintf(stderr, "%s: unexpected exception: %s\n", name, e.what());
    }
    (failures ? failed : passed)++;
    std::printf("%s %s\n", failures ? "FAIL" : "ok  ", name);
    std::fflush(stdout);
}

// Prints the tally; the exit code for main.
inline int finish() {
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

// Runs `f`, which must throw E (rkl::Error or a subclass) with `want`.
template <class E = rkl::Error, class F>
bool throws(rkl_status want, F f) {
    try {
        f();
    } catch (const E &e) {
        if (e.status() != want) std::fprintf(stderr, "got status %d (%s), want %d\n", e.status(), e.what(), want);
        return e.status() == want;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "got another exception: %s\n", e.what());
        return false;
    }
    std::fprintf(stderr, "nothing was thrown, want status %d\n", want);
    return false;
}

// $RKL_TEST_TMP, else /tmp.
inline std::string tmp_dir() {
    const char *dir = std::getenv("RKL_TEST_TMP");
    return std::string(dir && *dir ? dir : "/tmp");
}

// Writes a simulator model ("RKLLM-SIM 1" + `body`) named after the process
// and `name`, and returns its path.
inline std::string model_file(const char *name, const char *body) {
    std::string path = tmp_dir() + "/cpp-" + std::to_string(::getpid()) + "-" + name + ".sim";
    FILE *f = std::fopen(path.c_str(), "w");
    if (!f) {
        std::fprintf(stderr, "cannot write %s\n", path.c_str());
        std::exit(2);
    }
    std::fprintf(f, "RKLLM-SIM 1\n%s\n", body);
    std::fclose(f);
    return path;
}

}  // namespace harness

using harness::model_file;
using harness::run;
using harness::throws;
using harness::tmp_dir;

#endif
