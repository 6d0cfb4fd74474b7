// The program the interposer runs under: C++, so that libstdc++'s own
// initialisation calls malloc before the interposer's constructors run;
// it then loads a TLS module and allocates from two threads.
#include <cstdio>
#include <dlfcn.h>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    void *module = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (module == nullptr) {
        std::fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    int *(*get)() = reinterpret_cast<int *(*)()>(dlsym(module, "tls_get"));
    if (get == nullptr || *get() != 7)
        return 1;
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; t++)
        threads.emplace_back([] {
            for (int i = 0; i < 10000; i++) {
                std::string s(64 + i % 64, 'x');
                if (s.size() < 64)
                    std::abort();
            }
        });
    for (auto &t : threads)
        t.join();
    std::printf("interposed: ok\n");
    return 0;
}
