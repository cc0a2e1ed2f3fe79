/* Running programs from tests: capture stdout and stderr, exit status. */
#ifndef WBT_PROC_H
#define WBT_PROC_H

#include <stdbool.h>

typedef struct wbt_proc {
    int status; /* exit status, or 128 + signal */
    bool signaled;
    char *out; /* standard output (NUL-terminated) */
    char *err; /* standard error */
} wbt_proc;

/* Runs argv[0] (a path, or a name looked up in PATH) with argv and envp (NULL:
 * this process's environment); kills it after timeout_ms. Returns false when
 * it cannot be started. */
bool wbt_proc_run(const char *const *argv, const char *const *envp, unsigned timeout_ms,
                  wbt_proc *out);
void wbt_proc_free(wbt_proc *p);

/* A TCP port on 127.0.0.1 that nothing listens on right now. */
unsigned wbt_free_port(void);

#endif
