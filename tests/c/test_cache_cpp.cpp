// Prompt caches through the C++17 wrapper (rkl.hpp): Model::cache_save,
// cache_load, cache_release, rkl::cache_inspect; cache problems throw
// rkl::CacheError, other failures rkl::Error.
#include "harness.hpp"

#include <cstdio>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

static const std::string SYSTEM =
    "You are a careful assistant for a Rockchip board; answer briefly and exactly, in the user's language. ";

int main() {
    std::printf("rkl %s (C++ wrapper, prompt caches)\n", rkl::version().c_str());
    std::string model_path = model_file("cache-m", "reply = answer to {prompt}\nkv_bytes_per_token = 64");
    std::string other_path = model_file("cache-other", "reply = other {prompt}\nkv_bytes_per_token = 64\nname = other");
    std::string dir = tmp_dir() + "/cpp-cache-" + std::to_string(::getpid());
    ::mkdir(dir.c_str(), 0755);
    std::string path = dir + "/system ✓.rklcache";

    run("save_inspect_load_release", [&] {
        rkl::Model model(model_path);
        rkl::CacheInfo saved = model.cache_save(SYSTEM, path);
        CHECK(saved.valid() && saved.verdict_status == RKL_OK);
        CHECK(saved.manifest_path == path);
        CHECK(saved.model_path == model_path);
        CHECK(saved.prompt_bytes == SYSTEM.size());
        CHECK(saved.role == "user");
        CHECK(saved.save_stats.has_value());
        // In 1.2 the save run is stopped by an abort and may carry no
        // runtime figures (prefill_tokens 0); when they are there they fit.
        CHECK(saved.save_stats &&
              (saved.save_stats->prefill_tokens == 0 || saved.payload_size == 16 + saved.save_stats->prefill_tokens * 64u));

        rkl::CacheInfo seen = rkl::cache_inspect(path);
        CHECK(seen.valid() && !seen.save_stats);
        CHECK(seen.prompt_hash == saved.prompt_hash && seen.payload_checksum == saved.payload_checksum);

        rkl::Stats cold;
        std::string text = model.complete(SYSTEM + "Hi?", &cold);
        CHECK(text == "answer to " + SYSTEM + "Hi?");
        rkl::CacheInfo loaded = model.cache_load(path);
        CHECK(loaded.valid() && loaded.prompt_hash == saved.prompt_hash);
        rkl::Stats warm;
        text = model.complete(SYSTEM + "Hi?", &warm);
        CHECK(text == "answer to Hi?");
        CHECK(warm.prefill_tokens < cold.prefill_tokens / 2);
        // The prefix rule.
        CHECK(throws<rkl::CacheError>(RKL_CACHE_MISMATCH, [&] { model.complete("Hi?"); }));
        CHECK(throws(RKL_INVALID_ARGUMENT, [&] { model.cache_save(SYSTEM, dir + "/second.rklcache"); }));
        model.cache_release();
        CHECK(model.complete("Hi?") == "answer to Hi?");
    });

    run("errors", [&] {
        rkl::Model other(other_path);
        CHECK(throws<rkl::CacheError>(RKL_CACHE_NOT_FOUND, [&] { rkl::cache_inspect(dir + "/absent"); }));
        CHECK(throws<rkl::CacheError>(RKL_CACHE_NOT_FOUND, [&] { other.cache_load(dir + "/absent"); }));
        CHECK(throws<rkl::CacheError>(RKL_CACHE_MISMATCH, [&] { other.cache_load(path); }));
        CHECK(throws(RKL_IO, [&] { other.cache_save(SYSTEM, dir + "/missing dir/c.rklcache"); }));
        // A damaged payload: inspect reports it, load refuses it.
        rkl::CacheInfo info = rkl::cache_inspect(path);
        FILE *f = std::fopen(info.payload_path.c_str(), "ab");
        std::fputc('!', f);
        std::fclose(f);
        rkl::CacheInfo damaged = rkl::cache_inspect(path);
        CHECK(damaged.verdict == RKL_VERDICT_INVALID && damaged.verdict_status == RKL_CACHE_TRUNCATED);
        CHECK(!damaged.verdict_message.empty() && damaged.prompt_hash == info.prompt_hash);
        CHECK(throws<rkl::CacheError>(RKL_CACHE_TRUNCATED, [&] { damaged.check(); }));
        info.check();  // the copy taken while it was whole: no throw
        rkl::Model model(model_path);
        CHECK(throws<rkl::CacheError>(RKL_CACHE_TRUNCATED, [&] { model.cache_load(path); }));
        std::remove(info.payload_path.c_str());
        std::remove(path.c_str());
    });

    ::rmdir(dir.c_str());
    return harness::finish();
}
