/*
 * Components loaded after the program started, in a program linked with
 * librestartable.a:
 *   later classic PLUGIN         a classic __rseq_abi plugin (classic_plugin.c);
 *                                the program is linked with the export flags
 *                                of `pkg-config --static restartable`
 *   later copies N LIB           N copies of librestartable.so (LIB.0 ...),
 *                                each loaded RTLD_LOCAL, then LIB RTLD_GLOBAL
 * In library-owned mode every component must use the program's area, and
 * rseq (RESTARTABLE_TEST_EXPECT = libc, library, none).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>

#include "common.h"

static int owner;

static void *must(void *handle, const char *name)
{
    void *sym = dlsym(handle, name);
    if (sym == NULL) {
        fprintf(stderr, "dlsym %s: %s\n", name, dlerror());
        exit(1);
    }
    return sym;
}

static void *load(const char *path, int mode)
{
    void *handle = dlopen(path, RTLD_NOW | mode);
    if (handle == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        exit(1);
    }
    return handle;
}

static void *classic_thread(void *arg)
{
    void *plugin = arg;
    int (*reg)(void);
    int (*reg_uncounted)(void);
    void (*unreg)(void);
    int32_t (*cpu)(void);
    struct rseq_area *(*area)(void);
    *(void **)&reg = must(plugin, "plugin_register");
    *(void **)&reg_uncounted = must(plugin, "plugin_register_uncounted");
    *(void **)&unreg = must(plugin, "plugin_unregister");
    *(void **)&cpu = must(plugin, "plugin_cpu");
    *(void **)&area = must(plugin, "plugin_area");
    if (owner == RESTARTABLE_OWNER_LIBRARY) {
        /* The plugin first, then the program's library: one area. */
        CHECK_EQ(reg(), 0);
        CHECK(area() == rseq_location());
        CHECK(cpu() >= 0);
        CHECK(restartable_is_available());
        CHECK_EQ(restartable_thread_state(), RESTARTABLE_THREAD_REGISTERED);
        CHECK_EQ(reg_uncounted(), EBUSY); /* the very same area */
        unreg();
        CHECK(restartable_cpu() >= 0);
    } else if (owner == RESTARTABLE_OWNER_LIBC) {
        CHECK_EQ(reg_uncounted(), EINVAL); /* glibc's area is registered */
    }
    return NULL;
}

static void scenario_classic(const char *path)
{
    void *plugin;
    int (*reg)(void);
    void (*unreg)(void);
    struct rseq_area *(*area)(void);
    pthread_t t;
    /* The program's library first: it registers lazily. */
    CHECK(restartable_cpu() >= 0);
    plugin = load(path, RTLD_LOCAL);
    *(void **)&reg = must(plugin, "plugin_register");
    *(void **)&unreg = must(plugin, "plugin_unregister");
    *(void **)&area = must(plugin, "plugin_area");
    if (owner == RESTARTABLE_OWNER_LIBRARY) {
        CHECK(restartable_area_is_exported());
        CHECK(area() == rseq_location());
        CHECK_EQ(reg(), 0); /* counted: the area is held already */
        unreg();
        CHECK(restartable_is_available());
    }
    CHECK(pthread_create(&t, NULL, classic_thread, plugin) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    printf("later classic: ok\n");
}

struct copy {
    struct rseq_area *(*location)(void);
    int (*state)(void);
    int (*available)(void);
    int32_t (*cpu)(void);
};

#define MAX_COPIES 16
static struct copy copies[MAX_COPIES + 1];
static int ncopies;

static void *copies_thread(void *arg)
{
    int i;
    (void)arg;
    for (i = 0; i < ncopies; i++) {
        CHECK(copies[i].cpu() >= 0);
        if (owner == RESTARTABLE_OWNER_NONE) {
            CHECK_EQ(copies[i].available(), 0);
            continue;
        }
        CHECK(copies[i].location() == rseq_location());
        CHECK(copies[i].available());
        CHECK_EQ(copies[i].state(), owner == RESTARTABLE_OWNER_LIBC
                                        ? RESTARTABLE_THREAD_BORROWED
                                        : RESTARTABLE_THREAD_REGISTERED);
    }
    return NULL;
}

static void scenario_copies(int n, const char *lib)
{
    char path[4096];
    pthread_t t;
    int i;
    CHECK(n > 0 && n <= MAX_COPIES);
    for (i = 0; i <= n; i++) {
        void *handle;
        if (i < n) {
            snprintf(path, sizeof path, "%s.%d", lib, i);
            handle = load(path, RTLD_LOCAL);
        } else {
            handle = load(lib, RTLD_GLOBAL);
        }
        *(void **)&copies[i].location = must(handle, "rseq_location");
        *(void **)&copies[i].state = must(handle, "restartable_thread_state");
        *(void **)&copies[i].available = must(handle, "restartable_is_available");
        *(void **)&copies[i].cpu = must(handle, "restartable_cpu");
    }
    ncopies = n + 1;
    copies_thread(NULL);
    CHECK(pthread_create(&t, NULL, copies_thread, NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    printf("later copies: ok (%d)\n", ncopies);
}

int main(int argc, char **argv)
{
    owner = expected_owner();
    CHECK_EQ(restartable_owner(), owner);
    if (argc == 3 && strcmp(argv[1], "classic") == 0)
        scenario_classic(argv[2]);
    else if (argc == 4 && strcmp(argv[1], "copies") == 0)
        scenario_copies(atoi(argv[2]), argv[3]);
    else {
        fprintf(stderr, "usage: see the comment at the top of later.c\n");
        return 2;
    }
    return 0;
}
