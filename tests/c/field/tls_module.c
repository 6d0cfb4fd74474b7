/* A module with thread-local storage (general-dynamic, so that its dlopen
   installs a new DTV entry in every thread): what a process loads after
   the library ran early, to prove the thread control block is intact. */
__thread int tls_value = 7;

int *tls_get(void)
{
    return &tls_value;
}
