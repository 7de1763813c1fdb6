/**
 * @file rkl.hpp
 * @brief Header-only C++17 wrapper of rkl.h: RAII handles, exceptions,
 *        lambda callbacks.
 *
 * @code
 * rkl::Model model("qwen3-0.6b.rkllm");
 * rkl::Stats stats = model.generate("Hello!", [](std::string_view text) {
 *     std::cout << text << std::flush;
 * });
 * @endcode
 *
 * Prompt caches: `model.cache_save(system_prompt, path)` once,
 * `model.cache_load(path)` later, then requests give the full prompt
 * (system prompt + question); `rkl::cache_inspect(path)` needs no model.
 * They return rkl::CacheInfo, a copy (rkl's strings are freed at once).
 *
 * Automatic prompt caching: `rkl::OpenParams(path).set_cache_dir(dir)`, then
 * requests made with `rkl::GenerateParams(prompt).set_cache_prefix(system)`
 * save the prefix's cache the first time and reuse it afterwards
 * (`stats.cache_use` is RKL_CACHE_USE_SAVED, then RKL_CACHE_USE_HIT).
 *
 * Per-request sampling (runtime release 1.3): fill an rkl::SamplingParams
 * (`s.temperature = 0.25f`) and pass
 * `rkl::GenerateParams(prompt).set_sampling(s)`.
 *
 * Other inputs: `rkl::GenerateParams().set_tokens(ids)` (token ids),
 * `.set_embeddings(rows, dim)` (embedding rows), or a prompt with image
 * markers and `.set_images(rkl::MediaInput::images(values, count, tokens,
 * dim))`. Arrays are given as rkl::Span views of the caller's memory
 * (std::vector, std::array, C arrays, C++20 std::span, pointer + count):
 * they are not copied until the request is made, so they must outlive it,
 * and a view of a temporary container does not compile.
 * `model.hidden_states(params)` and `model.logits(params)` return an
 * rkl::Tensor that owns the floats (`tensor.row(i)`, `tensor.values()`).
 *
 * Isolation mode: `rkl::OpenParams(path).set_isolated().set_call_timeout(...)`
 * runs the runtime in a worker process; a crash then throws
 * rkl::RuntimeCrashed, a hang rkl::RuntimeTimeout, the process lives on and
 * the model restarts on the next call (or `model.restart()`).
 *
 * Every failing call throws rkl::Error, which carries the ::rkl_status and
 * the library's message; statuses a program may want to handle apart throw
 * a subclass (rkl::CacheError, rkl::Aborted, rkl::RuntimeCrashed,
 * rkl::RuntimeTimeout). Objects are move-only; destroying a Model closes
 * it, destroying a Stream closes (and so aborts) it. Thread-safety is that of
 * the C API: a Model may be used from several threads at once.
 */
#ifndef RKL_HPP
#define RKL_HPP

#include "rkl.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iterator>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace rkl {

/** A failed rkl call: its status and the library's message. */
class Error : public std::runtime_error {
public:
    Error(rkl_status status, const std::string &message)
        : std::runtime_error(message.empty() ? std::string(rkl_status_str(status)) : message), status_(status) {}

    /** The ::rkl_status of the failed call. */
    rkl_status status() const noexcept { return status_; }

private:
    rkl_status status_;
};

/** A prompt cache could not be used: RKL_CACHE_NOT_FOUND, _INVALID,
 *  _VERSION, _TRUNCATED, _CORRUPT, _MISMATCH (another model or runtime
 *  release, or a prompt that breaks the prefix rule) or _UNTRUSTED (owned
 *  by another user or writable by others); status() says which. */
class CacheError : public Error {
public:
    using Error::Error;
};

/** RKL_ABORTED: the operation (a cache save, a call cut short by restart())
 *  was aborted before it completed. */
class Aborted : public Error {
public:
    using Error::Error;
};

/** RKL_RUNTIME_CRASHED: isolation mode, the worker process running the
 *  runtime died during the call (what() names the signal). This process is
 *  unharmed; the model restarts on the next call, or with Model::restart(). */
class RuntimeCrashed : public Error {
public:
    using Error::Error;
};

/** RKL_RUNTIME_TIMEOUT: the runtime made no progress for `call_timeout_ms`.
 *  Isolation mode: its worker was killed and the model restarts on the next
 *  call. In-process: the runtime stays stuck and every model on it throws
 *  this from then on. */
class RuntimeTimeout : public Error {
public:
    using Error::Error;
};

namespace detail {

/** The calling thread's last error message. */
inline std::string last_message() {
    std::size_t n = rkl_last_error_message(nullptr, 0);
    std::string text(n, '\0');
    if (n > 0) rkl_last_error_message(text.data(), n + 1);
    return text;
}

/** Throws the exception for a failed status (rkl::Error or the subclass
 *  for its status). */
[[noreturn]] inline void raise(rkl_status status, const std::string &message) {
    switch (status) {
    case RKL_CACHE_NOT_FOUND:
    case RKL_CACHE_INVALID:
    case RKL_CACHE_VERSION:
    case RKL_CACHE_TRUNCATED:
    case RKL_CACHE_CORRUPT:
    case RKL_CACHE_MISMATCH:
    case RKL_CACHE_UNTRUSTED:
        throw CacheError(status, message);
    case RKL_ABORTED:
        throw Aborted(status, message);
    case RKL_RUNTIME_CRASHED:
        throw RuntimeCrashed(status, message);
    case RKL_RUNTIME_TIMEOUT:
        throw RuntimeTimeout(status, message);
    default:
        throw Error(status, message);
    }
}

/** Throws unless `status` is RKL_OK, with this thread's last message. */
inline void check(rkl_status status) {
    if (status != RKL_OK) raise(status, last_message());
}

/** A duration in whole ms for a uint32_t field, or rkl::Error. */
inline std::uint32_t milliseconds(std::chrono::milliseconds value, const char *what) {
    if (value.count() < 0 || value.count() > static_cast<std::chrono::milliseconds::rep>(UINT32_MAX)) {
        throw Error(RKL_INVALID_ARGUMENT, std::string(what) + ": " + std::to_string(value.count()) +
                                              " ms is out of range (0 .. 4294967295)");
    }
    return static_cast<std::uint32_t>(value.count());
}

}  // namespace detail

/** Figures of one generation (rkl_stats). */
using Stats = rkl_stats;

/** Stats with `struct_size` set, the rest 0. */
inline Stats empty_stats() {
    Stats stats{};
    stats.struct_size = sizeof(Stats);
    return stats;
}

/** A view of `size()` values of type `T` in memory rkl does not own: the
 *  shape of std::span (C++20) for this C++17 header. Built from a pointer
 *  and a count, or from any contiguous container with data() and size() of
 *  the same element type (std::vector, std::array, std::span, C arrays).
 *  A view of a temporary container is refused at compile time, because the
 *  params that hold views keep them until the request is made. */
template <class T>
class Span {
    template <class C>
    using element_of = std::remove_pointer_t<decltype(std::data(std::declval<C &>()))>;
    template <class C>
    using if_container = std::enable_if_t<!std::is_same_v<std::remove_cv_t<C>, Span> &&
                                          std::is_convertible_v<element_of<C> (*)[], T (*)[]>,
                                          int>;

public:
    using element_type = T;
    using value_type = std::remove_cv_t<T>;
    using size_type = std::size_t;
    using iterator = T *;

    constexpr Span() noexcept = default;
    constexpr Span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}
    template <class C, if_container<C> = 0>
    constexpr Span(C &container) noexcept : data_(std::data(container)), size_(std::size(container)) {}
    template <class C, if_container<const C> = 0>
    constexpr Span(const C &container) noexcept : data_(std::data(container)), size_(std::size(container)) {}
    template <class C, if_container<const C> = 0>
    Span(const C &&container) = delete;

    constexpr T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T *begin() const noexcept { return data_; }
    constexpr T *end() const noexcept { return data_ + size_; }
    /** Unchecked, like std::span's. */
    constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }

private:
    T *data_ = nullptr;
    std::size_t size_ = 0;
};

namespace detail {

/** a * b, or rkl::Error (RKL_INVALID_ARGUMENT) when it overflows size_t. */
inline std::size_t multiply(std::size_t a, std::size_t b, const char *what) {
    if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) {
        throw Error(RKL_INVALID_ARGUMENT, std::string(what) + ": the shape overflows size_t");
    }
    return a * b;
}

/** Throws RKL_INVALID_ARGUMENT unless a view holds exactly `want` values. */
inline void expect_size(std::size_t have, std::size_t want, const char *what) {
    if (have != want) {
        throw Error(RKL_INVALID_ARGUMENT, std::string(what) + ": " + std::to_string(have) + " values given, the shape needs " +
                                              std::to_string(want));
    }
}

}  // namespace detail

/** Image or video embeddings of a multimodal request (rkl_media_input), as
 *  the vision encoder made them; built by images() or videos(), which check
 *  the view's length against the shape. Holds a view, not a copy: the
 *  values must live until the request is made. */
struct MediaInput : rkl_media_input {
    MediaInput() : rkl_media_input() {
        detail::check(rkl_media_input_init(this, sizeof(rkl_media_input)));
    }

    /** `count` images of `tokens` rows of `dim` floats each. */
    static MediaInput images(Span<const float> values, std::size_t count, std::size_t tokens, std::size_t dim) {
        return videos(values, count, 0, tokens, dim);
    }
    /** `count` videos of `frames` frames of `tokens` rows of `dim` floats
     *  (runtime release 1.3). `frames` 0 counts as 1 (images). */
    static MediaInput videos(Span<const float> values, std::size_t count, std::size_t frames, std::size_t tokens,
                             std::size_t dim) {
        std::size_t want = detail::multiply(
            detail::multiply(detail::multiply(count, frames ? frames : 1, "media input"), tokens, "media input"), dim,
            "media input");
        detail::expect_size(values.size(), want, "media input");
        MediaInput input;
        input.embeddings = values.data();
        input.count = count;
        input.frames = frames;
        input.tokens = tokens;
        input.dim = dim;
        return input;
    }
    /** The images' (frames') size in pixels, for models that use it. */
    MediaInput &set_pixels(std::size_t width_px, std::size_t height_px) noexcept {
        width = width_px;
        height = height_px;
        return *this;
    }
};

/** The encoder state of a cross-attention model for one request
 *  (rkl_cross_attn_params; a model opened with OpenParams::set_cross_attn).
 *  Holds views, not copies: they must live until the request is made. */
struct CrossAttnParams : rkl_cross_attn_params {
    /** `k` and `v` of the same length, a multiple of the encoder tokens;
     *  `mask` and `positions` one value per encoder token. */
    CrossAttnParams(Span<const float> k, Span<const float> v, Span<const float> token_mask,
                    Span<const std::int32_t> token_positions)
        : rkl_cross_attn_params() {
        detail::check(rkl_cross_attn_params_init(this, sizeof(rkl_cross_attn_params)));
        detail::expect_size(v.size(), k.size(), "cross-attention v_cache (as k_cache)");
        detail::expect_size(token_mask.size(), token_positions.size(), "cross-attention mask (one per position)");
        k_cache = k.data();
        v_cache = v.data();
        cache_floats = k.size();
        mask = token_mask.data();
        positions = token_positions.data();
        num_tokens = token_positions.size();
    }
};

/** rkl_open_params filled with the defaults by its constructor. Its fields
 *  may be set directly; the setters below cover isolation mode and automatic
 *  prompt caching. The strings it points to must live until the Model is
 *  constructed. */
struct OpenParams : rkl_open_params {
    explicit OpenParams(const char *model = nullptr) : rkl_open_params() {
        detail::check(rkl_open_params_init(this, sizeof(rkl_open_params)));
        model_path = model;
    }

    /** Isolation mode (RKL_OPEN_ISOLATED): the runtime runs in a worker
     *  process (`rkl-host`, found beside librkl or through `RKL_HOST`), so
     *  its crashes and hangs throw instead of ending this process. */
    OpenParams &set_isolated(bool on = true) noexcept {
        flags = on ? (flags | RKL_OPEN_ISOLATED) : (flags & ~static_cast<std::uint32_t>(RKL_OPEN_ISOLATED));
        return *this;
    }
    /** A call or generation on which the runtime makes no progress for this
     *  long throws rkl::RuntimeTimeout; 0 (default): no limit. Must exceed
     *  the longest prefill. */
    OpenParams &set_call_timeout(std::chrono::milliseconds timeout) {
        call_timeout_ms = detail::milliseconds(timeout, "call timeout");
        return *this;
    }
    /** How long the runtime may take to stop after an abort; isolation mode
     *  then kills its worker. 0: the default, 2 s. */
    OpenParams &set_abort_grace(std::chrono::milliseconds grace) {
        abort_grace_ms = detail::milliseconds(grace, "abort grace");
        return *this;
    }
    /** Isolation mode: automatic restarts allowed per minute after the
     *  worker died (default 3); past it calls throw rkl::RuntimeCrashed
     *  until Model::restart(). 0 or negative: never restart automatically
     *  (unlike the C field, where 0 means the default and -1 never). */
    OpenParams &set_max_restarts(int per_minute) noexcept {
        max_restarts = per_minute > 0 ? static_cast<std::int32_t>(per_minute) : -1;
        return *this;
    }
    /** Automatic prompt caching: a directory (UTF-8; made owner-only when
     *  missing) where requests that mark a stable prefix
     *  (GenerateParams::set_cache_prefix) find the prefix's cache, or save
     *  it the first time. Keyed by the model file's content, the runtime
     *  release, the chat template, the prefix and the settings that shape
     *  the KV state; several models and processes may share it. nullptr
     *  (default): off. `dir` must live until the Model is constructed. */
    OpenParams &set_cache_dir(const char *dir) noexcept {
        cache_dir = dir;
        return *this;
    }
    /** The most bytes the cache directory's automatic caches may take
     *  together; past it the least recently used are removed. 0 (default):
     *  no cap. Refused by the Model's constructor without a cache dir. */
    OpenParams &set_cache_max_bytes(std::uint64_t max_bytes) noexcept {
        cache_max_bytes = max_bytes;
        return *this;
    }
    /** A cross-attention model: requests pass
     *  GenerateParams::set_cross_attn (runtime 1.2.1 or later). */
    OpenParams &set_cross_attn(bool on = true) noexcept {
        use_cross_attn = on ? 1 : 0;
        return *this;
    }
    /** The strings the runtime puts before, after and inside each image of
     *  a multimodal prompt (e.g. "<|vision_start|>", "<|vision_end|>",
     *  "<|image_pad|>"): all three or none. rkl gives them to 1.2 at open
     *  and to 1.3 with every request. They must live until the Model is
     *  constructed. */
    OpenParams &set_image_tags(const char *start, const char *end, const char *content) noexcept {
        image_start = start;
        image_end = end;
        image_content = content;
        return *this;
    }
    /** Video tags (runtime release 1.3), as set_image_tags. */
    OpenParams &set_video_tags(const char *start, const char *end, const char *content) noexcept {
        video_start = start;
        video_end = end;
        video_content = content;
        return *this;
    }
    /** The caller's tokenizer (release 1.3, in-process models): a plain C
     *  function (see ::rkl_tokenize_fn; it must not throw) and its
     *  userdata, which must live until the Model is closed. */
    OpenParams &set_tokenizer(rkl_tokenize_fn fn, void *userdata = nullptr) noexcept {
        tokenizer = fn;
        tokenizer_userdata = userdata;
        return *this;
    }
    /** The caller's embedding lookup (release 1.3, in-process models), as
     *  set_tokenizer (see ::rkl_embed_fn). */
    OpenParams &set_embedder(rkl_embed_fn fn, void *userdata = nullptr) noexcept {
        embedder = fn;
        embedder_userdata = userdata;
        return *this;
    }
};

/** rkl_sampling_params with every field unset (::RKL_UNSET, NaN: the
 *  model's values) by its constructor; set the fields to change directly,
 *  then hand it to GenerateParams::set_sampling. */
struct SamplingParams : rkl_sampling_params {
    SamplingParams() : rkl_sampling_params() {
        detail::check(rkl_sampling_params_init(this, sizeof(rkl_sampling_params)));
    }
};

/** rkl_generate_params filled with the defaults by its constructor. */
struct GenerateParams : rkl_generate_params {
    explicit GenerateParams(const char *text = nullptr) : rkl_generate_params() {
        detail::check(rkl_generate_params_init(this, sizeof(rkl_generate_params)));
        prompt = text;
    }

    /** Automatic prompt caching (a model opened with a cache dir): `prefix`
     *  is the start of the prompt that stays the same from request to
     *  request (a system prompt, say); its KV state is saved the first time
     *  and reused by every later request with the same prefix. Set the
     *  prompt first: `prefix` must be a prefix of it (else rkl::Error with
     *  RKL_INVALID_ARGUMENT), shorter than it and ending on a character
     *  boundary (else the request throws that). Sets `cache_prefix_bytes`
     *  to its length in bytes; "" marks none. Ignored without a cache dir. */
    GenerateParams &set_cache_prefix(std::string_view prefix) {
        std::string_view text = prompt ? std::string_view(prompt) : std::string_view();
        if (text.substr(0, prefix.size()) != prefix) {
            throw Error(RKL_INVALID_ARGUMENT, "cache prefix: not a prefix of the prompt");
        }
        cache_prefix_bytes = prefix.size();
        return *this;
    }

    /** This request's own sampling settings (see rkl::SamplingParams): the
     *  set fields replace the model's values for this request alone. A 1.3
     *  runtime takes them; on a 1.2 runtime the request throws rkl::Error
     *  with RKL_NOT_SUPPORTED, and a value out of range throws
     *  RKL_INVALID_ARGUMENT. Sets `sampling` to `&params`, which is not
     *  copied: it must live until the request is made (hence no temporary).
     *  Without it (`sampling` nullptr): the model's values. */
    GenerateParams &set_sampling(const rkl_sampling_params &params) noexcept {
        sampling = &params;
        return *this;
    }
    GenerateParams &set_sampling(const rkl_sampling_params &&) = delete;

    /** Feeds token ids instead of a prompt (clears `prompt`). The view is
     *  kept, not copied: the ids must live until the request is made. */
    GenerateParams &set_tokens(Span<const std::int32_t> ids) noexcept {
        clear_input();
        input_kind = RKL_INPUT_TOKENS;
        tokens = ids.data();
        n_tokens = ids.size();
        return *this;
    }
    /** Feeds embedding rows of `dim` floats instead of a prompt (clears
     *  `prompt`); throws rkl::Error (RKL_INVALID_ARGUMENT) when the view's
     *  length is not a multiple of `dim`. Kept, not copied. */
    GenerateParams &set_embeddings(Span<const float> rows, std::size_t dim) {
        if (dim == 0 || rows.size() % dim != 0) {
            throw Error(RKL_INVALID_ARGUMENT, "embeddings: " + std::to_string(rows.size()) +
                                                  " values are not whole rows of " + std::to_string(dim));
        }
        clear_input();
        input_kind = RKL_INPUT_EMBEDDINGS;
        embeddings = rows.data();
        n_embedding_tokens = rows.size() / dim;
        embedding_dim = dim;
        return *this;
    }
    /** A multimodal request: the prompt (set it first) holds one image
     *  marker per image. Not copied: `input` and its values must live
     *  until the request is made. */
    GenerateParams &set_images(const rkl_media_input &input) noexcept {
        input_kind = RKL_INPUT_MULTIMODAL;
        images = &input;
        return *this;
    }
    GenerateParams &set_images(const rkl_media_input &&) = delete;
    /** Videos of a multimodal request (runtime release 1.3), as set_images. */
    GenerateParams &set_videos(const rkl_media_input &input) noexcept {
        input_kind = RKL_INPUT_MULTIMODAL;
        videos = &input;
        return *this;
    }
    GenerateParams &set_videos(const rkl_media_input &&) = delete;
    /** The encoder state for a cross-attention model; not copied until the
     *  request is made. The runtime keeps it for later requests until
     *  another one gives a new state. */
    GenerateParams &set_cross_attn(const rkl_cross_attn_params &params) noexcept {
        cross_attn = &params;
        return *this;
    }
    GenerateParams &set_cross_attn(const rkl_cross_attn_params &&) = delete;

private:
    void clear_input() noexcept {
        prompt = nullptr;
        tokens = nullptr;
        n_tokens = 0;
        embeddings = nullptr;
        n_embedding_tokens = 0;
        embedding_dim = 0;
        images = nullptr;
        videos = nullptr;
    }
};

/** Floats the runtime computed (rkl_tensor): tokens() rows of dim() values.
 *  Owns them; move-only; frees them with rkl_tensor_free() when destroyed. */
class Tensor {
public:
    Tensor() noexcept : raw_() { raw_.struct_size = sizeof raw_; }
    Tensor(Tensor &&other) noexcept : Tensor() {
        std::swap(raw_, other.raw_);
        stats_ = other.stats_;
    }
    Tensor &operator=(Tensor &&other) noexcept {
        if (this != &other) {
            reset();
            std::swap(raw_, other.raw_);
            stats_ = other.stats_;
        }
        return *this;
    }
    Tensor(const Tensor &) = delete;
    Tensor &operator=(const Tensor &) = delete;
    ~Tensor() { reset(); }

    /** Rows: one per token. */
    std::size_t tokens() const noexcept { return raw_.tokens; }
    /** Values per row: the embedding size (hidden states) or the
     *  vocabulary size (logits). */
    std::size_t dim() const noexcept { return raw_.dim; }
    /** All tokens() * dim() values, row after row. */
    Span<const float> values() const noexcept { return Span<const float>(raw_.data, raw_.tokens * raw_.dim); }
    /** Row `i`; std::out_of_range past the last. */
    Span<const float> row(std::size_t i) const {
        if (i >= raw_.tokens) {
            throw std::out_of_range("rkl::Tensor::row: " + std::to_string(i) + " of " + std::to_string(raw_.tokens) +
                                    " rows");
        }
        return Span<const float>(raw_.data + i * raw_.dim, raw_.dim);
    }
    /** The figures of the run that computed it. */
    const Stats &stats() const noexcept { return stats_; }

private:
    friend class Model;  // fills raw_ and stats_ through rkl_hidden_states() / rkl_logits()

    void reset() noexcept {
        rkl_tensor_free(&raw_);
    }

    rkl_tensor raw_;
    Stats stats_ = empty_stats();
};

/** What rkl_model_info() tells, copied. */
struct ModelInfo {
    std::string model_path;
    std::string runtime_path;
    std::string family;
    std::string runtime_version;
};

/** A prompt cache's manifest and verdict (rkl_cache_info), copied. */
struct CacheInfo {
    rkl_cache_verdict verdict = RKL_VERDICT_VALID;
    /** RKL_OK when valid, RKL_CACHE_MISMATCH when stale, else why it is invalid. */
    rkl_status verdict_status = RKL_OK;
    std::string verdict_message;
    std::string manifest_path;
    std::uint32_t format_version = 0;
    std::int32_t max_context_len = 0;
    std::string library_version;
    std::string runtime_family;
    std::string runtime_version;
    std::string model_path;
    std::uint64_t model_size = 0;
    std::uint64_t model_mtime_ns = 0;
    std::string model_fingerprint;
    std::string prompt_hash;
    std::uint64_t prompt_bytes = 0;
    std::string prompt_preview;
    std::string role;
    bool enable_thinking = false;
    bool has_chat_template = false;
    std::string chat_system;
    std::string chat_prefix;
    std::string chat_postfix;
    std::string payload_path;
    std::uint64_t payload_size = 0;
    std::string payload_checksum;
    std::uint64_t created_unix = 0;
    /** The save run's figures (only from Model::cache_save). */
    std::optional<Stats> save_stats;

    bool valid() const noexcept { return verdict == RKL_VERDICT_VALID; }
    /** Throws what Model::cache_load() would throw for this verdict
     *  (rkl::CacheError: RKL_CACHE_MISMATCH when stale, else why it is
     *  invalid); returns when the cache is valid. */
    void check() const {
        if (verdict_status != RKL_OK) detail::raise(verdict_status, verdict_message);
    }
};

namespace detail {

/** A caller-side rkl_cache_info, freed by rkl_cache_info_free() on scope exit. */
struct RawCacheInfo {
    rkl_cache_info raw;

    RawCacheInfo() noexcept : raw() { raw.struct_size = sizeof(rkl_cache_info); }
    RawCacheInfo(const RawCacheInfo &) = delete;
    RawCacheInfo &operator=(const RawCacheInfo &) = delete;
    ~RawCacheInfo() { rkl_cache_info_free(&raw); }

    /** Copies everything out (rkl's strings are freed by the destructor). */
    CacheInfo copy() const {
        auto text = [](const char *s) { return std::string(s ? s : ""); };
        CacheInfo info;
        info.verdict = raw.verdict;
        info.verdict_status = raw.verdict_status;
        info.verdict_message = text(raw.verdict_message);
        info.manifest_path = text(raw.manifest_path);
        info.format_version = raw.format_version;
        info.max_context_len = raw.max_context_len;
        info.library_version = text(raw.library_version);
        info.runtime_family = text(raw.runtime_family);
        info.runtime_version = text(raw.runtime_version);
        info.model_path = text(raw.model_path);
        info.model_size = raw.model_size;
        info.model_mtime_ns = raw.model_mtime_ns;
        info.model_fingerprint = text(raw.model_fingerprint);
        info.prompt_hash = text(raw.prompt_hash);
        info.prompt_bytes = raw.prompt_bytes;
        info.prompt_preview = text(raw.prompt_preview);
        info.role = text(raw.role);
        info.enable_thinking = raw.enable_thinking;
        info.has_chat_template = raw.has_chat_template;
        info.chat_system = text(raw.chat_system);
        info.chat_prefix = text(raw.chat_prefix);
        info.chat_postfix = text(raw.chat_postfix);
        info.payload_path = text(raw.payload_path);
        info.payload_size = raw.payload_size;
        info.payload_checksum = text(raw.payload_checksum);
        info.created_unix = raw.created_unix;
        if (raw.save_stats) {
            // The library's rkl_stats may be older (smaller) than this header's.
            Stats stats = empty_stats();
            std::size_t n = raw.save_stats->struct_size < sizeof(Stats) ? raw.save_stats->struct_size : sizeof(Stats);
            std::memcpy(&stats, raw.save_stats, n);
            stats.struct_size = sizeof(Stats);
            info.save_stats = stats;
        }
        return info;
    }
};

}  // namespace detail

/** Reads a prompt cache's manifest and verdict without a model
 *  (rkl_cache_inspect). A damaged payload or a changed model is reported in
 *  the verdict; throws rkl::CacheError (or rkl::Error with RKL_IO) when
 *  there is no manifest to report on. */
inline CacheInfo cache_inspect(const std::string &path) {
    detail::RawCacheInfo raw;
    detail::check(rkl_cache_inspect(path.c_str(), &raw.raw));
    return raw.copy();
}

/** A pull stream (rkl_stream). Closing it aborts an unfinished generation. */
class Stream {
public:
    /** What poll() found. */
    enum class Poll { Text, Timeout, End };

    explicit Stream(rkl_stream *handle) noexcept : handle_(handle) {}
    Stream(Stream &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Stream &operator=(Stream &&other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Stream(const Stream &) = delete;
    Stream &operator=(const Stream &) = delete;
    ~Stream() { reset(); }

    /** Waits for the next text; std::nullopt at the end. The view is valid
     *  until the next call on this stream. */
    std::optional<std::string_view> next() {
        std::string_view text;
        if (poll(text, std::chrono::milliseconds(-1)) == Poll::Text) return text;
        return std::nullopt;
    }

    /** Waits up to `timeout` (negative: without limit) for the next text. */
    Poll poll(std::string_view &text, std::chrono::milliseconds timeout) {
        const char *data = nullptr;
        std::size_t len = 0;
        auto ms = timeout.count();
        std::int32_t limit = ms < 0 ? -1 : (ms > INT32_MAX ? INT32_MAX : static_cast<std::int32_t>(ms));
        rkl_status status = rkl_stream_next(handle_, limit, &data, &len);
        if (status == RKL_TIMEOUT) return Poll::Timeout;
        detail::check(status);
        if (data == nullptr) return Poll::End;
        text = std::string_view(data, len);
        return Poll::Text;
    }

    /** The figures, once the stream reported its end. */
    Stats stats() const {
        Stats stats = empty_stats();
        detail::check(rkl_stream_stats(handle_, &stats));
        return stats;
    }

    /** Asks the generation to stop; the stream then ends. */
    void abort() { detail::check(rkl_stream_abort(handle_)); }

    /** The C handle (still owned by this object). */
    rkl_stream *get() const noexcept { return handle_; }

    /** Input iterator over the texts: `for (std::string_view t : stream)`. */
    class iterator {
    public:
        using iterator_category = std::input_iterator_tag;
        using value_type = std::string_view;
        using difference_type = std::ptrdiff_t;
        using pointer = const std::string_view *;
        using reference = const std::string_view &;

        iterator() = default;
        explicit iterator(Stream *stream) : stream_(stream) { ++*this; }
        reference operator*() const { return text_; }
        pointer operator->() const { return &text_; }
        iterator &operator++() {
            auto text = stream_->next();
            if (text) {
                text_ = *text;
            } else {
                stream_ = nullptr;
            }
            return *this;
        }
        bool operator==(const iterator &other) const { return stream_ == other.stream_; }
        bool operator!=(const iterator &other) const { return stream_ != other.stream_; }

    private:
        Stream *stream_ = nullptr;
        std::string_view text_;
    };

    iterator begin() { return iterator(this); }
    iterator end() { return iterator(); }

private:
    void reset() noexcept {
        if (handle_) rkl_stream_close(handle_);
        handle_ = nullptr;
    }

    rkl_stream *handle_;
};

/** An open model (rkl_model). */
class Model {
public:
    /** Opens with `params` (see OpenParams). */
    explicit Model(const rkl_open_params &params) : handle_(nullptr) {
        detail::check(rkl_open(&params, &handle_));
    }
    /** Opens `model_path` with default settings. */
    explicit Model(const std::string &model_path) : Model(OpenParams(model_path.c_str())) {}

    Model(Model &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Model &operator=(Model &&other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;
    ~Model() { reset(); }

    /** Closes now (the destructor does it otherwise). */
    void close() {
        rkl_model *handle = std::exchange(handle_, nullptr);
        detail::check(rkl_close(handle));
    }

    /** Generates, calling `on_text(std::string_view)` with each piece of
     *  text on this thread. `on_text` may return void, or bool (false stops
     *  the generation). An exception thrown by `on_text` stops the
     *  generation and is rethrown here. */
    template <class F>
    Stats generate(const rkl_generate_params &params, F &&on_text) {
        Callback<std::decay_t<F>> callback{std::forward<F>(on_text), nullptr};
        Stats stats = empty_stats();
        rkl_status status = rkl_generate(handle_, &params, &Callback<std::decay_t<F>>::call, &callback, &stats);
        if (callback.error) std::rethrow_exception(callback.error);
        detail::check(status);
        return stats;
    }

    /** Generates a reply to `prompt` with default settings. */
    template <class F>
    Stats generate(const std::string &prompt, F &&on_text) {
        return generate(GenerateParams(prompt.c_str()), std::forward<F>(on_text));
    }

    /** Generates and returns the whole reply. */
    std::string complete(const std::string &prompt, Stats *stats = nullptr) {
        std::string out;
        Stats s = generate(prompt, [&out](std::string_view text) { out.append(text); });
        if (stats) *stats = s;
        return out;
    }

    /** Starts a generation to pull from. */
    Stream stream(const rkl_generate_params &params) {
        rkl_stream *handle = nullptr;
        detail::check(rkl_stream_open(handle_, &params, &handle));
        return Stream(handle);
    }
    Stream stream(const std::string &prompt) { return stream(GenerateParams(prompt.c_str())); }

    /** Runs a request and returns the last hidden layer of its input, one
     *  row per token (the embedding vectors retrieval uses); nothing is
     *  generated. Takes every input kind. */
    Tensor hidden_states(const rkl_generate_params &params) {
        Tensor tensor;
        detail::check(rkl_hidden_states(handle_, &params, &tensor.raw_, &tensor.stats_));
        return tensor;
    }
    Tensor hidden_states(const std::string &prompt) { return hidden_states(GenerateParams(prompt.c_str())); }

    /** Runs a request and returns the logits the runtime computed (rows of
     *  the vocabulary's size); nothing is generated. */
    Tensor logits(const rkl_generate_params &params) {
        Tensor tensor;
        detail::check(rkl_logits(handle_, &params, &tensor.raw_, &tensor.stats_));
        return tensor;
    }
    Tensor logits(const std::string &prompt) { return logits(GenerateParams(prompt.c_str())); }

    /** Stops every running or queued generation of this model; safe from
     *  any thread and from inside a callback. */
    void abort() { detail::check(rkl_abort(handle_)); }

    void clear_history(bool keep_system_prompt = false) {
        detail::check(rkl_clear_history(handle_, keep_system_prompt ? 1 : 0));
    }
    std::uint32_t kv_cache_tokens() {
        std::uint32_t tokens = 0;
        detail::check(rkl_kv_cache_tokens(handle_, &tokens));
        return tokens;
    }
    void set_chat_template(const std::string &system, const std::string &prefix, const std::string &postfix) {
        detail::check(rkl_set_chat_template(handle_, system.c_str(), prefix.c_str(), postfix.c_str()));
    }
    void set_function_tools(const std::string &system, const std::string &tools_json, const std::string &tool_response) {
        detail::check(rkl_set_function_tools(handle_, system.c_str(), tools_json.c_str(), tool_response.c_str()));
    }
    void load_lora(const std::string &path, const std::string &name, float scale = 1.0f) {
        detail::check(rkl_load_lora(handle_, path.c_str(), name.c_str(), scale));
    }

    /** Saves the prompt cache of `params.prompt` at `path` (rkl_cache_save):
     *  empties the history, prefills, writes payload + manifest atomically. */
    CacheInfo cache_save(const rkl_generate_params &params, const std::string &path) {
        detail::RawCacheInfo raw;
        detail::check(rkl_cache_save(handle_, &params, path.c_str(), &raw.raw));
        return raw.copy();
    }
    CacheInfo cache_save(const std::string &prompt, const std::string &path) {
        return cache_save(GenerateParams(prompt.c_str()), path);
    }

    /** Validates and loads the cache at `path` (rkl_cache_load); a cache
     *  that is missing, malformed, damaged or not this model's throws
     *  rkl::CacheError. While it is loaded, every request gives the FULL
     *  prompt, starting with the cached prompt; anything else throws
     *  rkl::CacheError with RKL_CACHE_MISMATCH. */
    CacheInfo cache_load(const std::string &path) {
        detail::RawCacheInfo raw;
        detail::check(rkl_cache_load(handle_, path.c_str(), &raw.raw));
        return raw.copy();
    }

    /** Unloads the prompt cache and empties the history (rkl_cache_release). */
    void cache_release() { detail::check(rkl_cache_release(handle_)); }

    ModelInfo info() const {
        rkl_model_details details{};
        details.struct_size = sizeof details;
        detail::check(rkl_model_info(handle_, &details));
        return ModelInfo{details.model_path, details.runtime_path, details.family, details.runtime_version};
    }

    /** Isolation mode: stops the worker process (running generations end
     *  with RKL_FINISH_ABORTED, other calls in flight throw rkl::Aborted),
     *  starts a new one and opens the model again, restoring the chat
     *  template, function tools, LoRA adapters and loaded prompt cache (not
     *  the history). Resets the restart count. An in-process model throws
     *  rkl::Error with RKL_NOT_SUPPORTED. */
    void restart() { detail::check(rkl_model_restart(handle_)); }

    /** The C handle (still owned by this object). */
    rkl_model *get() const noexcept { return handle_; }

private:
    template <class F>
    struct Callback {
        F fn;
        std::exception_ptr error;

        static int call(const char *text, std::size_t len, void *userdata) noexcept {
            auto *self = static_cast<Callback *>(userdata);
            try {
                std::string_view piece(text, len);
                if constexpr (std::is_void_v<std::invoke_result_t<F &, std::string_view>>) {
                    self->fn(piece);
                    return 0;
                } else {
                    return static_cast<bool>(self->fn(piece)) ? 0 : 1;
                }
            } catch (...) {
                self->error = std::current_exception();
                return 1;
            }
        }
    };

    void reset() noexcept {
        if (handle_) rkl_close(handle_);
        handle_ = nullptr;
    }

    rkl_model *handle_;
};

/** The loaded librkl's version ("MAJOR.MINOR.PATCH"). */
inline std::string version() { return rkl_version(); }

}  // namespace rkl

#endif  // RKL_HPP
