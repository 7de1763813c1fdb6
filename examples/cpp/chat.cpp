// chat.cpp: stream a model's replies to the terminal with rkl.hpp.
//
//   chat MODEL [PROMPT...]     answers each PROMPT (default: "Hello!")
//
// Build: c++ -std=c++17 chat.cpp $(pkg-config --cflags --libs rkl) -o chat
// The runtime is found through RKL_RUNTIME, else as librkllmrt.so.
#include <rkl.hpp>

#include <iostream>
#include <string>
#include <vector>

int main(int argc, char **argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " MODEL [PROMPT...]\n";
        return 2;
    }
    std::vector<std::string> prompts(argv + 2, argv + argc);
    if (prompts.empty()) prompts.push_back("Hello!");
    try {
        rkl::Model model(argv[1]);  // closed by its destructor
        rkl::ModelInfo info = model.info();
        std::cout << "rkl " << rkl::version() << ": " << info.model_path << " on ABI " << info.family << "\n";

        // A callback: a lambda called with each piece of text.
        std::cout << "> " << prompts[0] << "\n";
        rkl::Stats stats = model.generate(prompts[0], [](std::string_view text) { std::cout << text << std::flush; });
        std::cout << "\n[" << stats.tokens << " tokens, first after " << stats.ttft_ms << " ms]\n";

        // A pull stream: a range of pieces of text, closed by its destructor.
        for (std::size_t i = 1; i < prompts.size(); i++) {
            std::cout << "> " << prompts[i] << "\n";
            rkl::Stream stream = model.stream(prompts[i]);
            for (std::string_view text : stream) std::cout << text << std::flush;
            std::cout << "\n[" << stream.stats().tokens << " tokens]\n";
        }
    } catch (const rkl::Error &e) {
        std::cerr << "error: " << e.what() << " (" << rkl_status_str(e.status()) << ")\n";
        return 1;
    }
    return 0;
}
