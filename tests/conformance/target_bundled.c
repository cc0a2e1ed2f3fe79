/* The bundled broker as a conformance target's environment. */
#include "target_bundled.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <unistd.h>

wbt_env wbt_bundled_env;

void wbt_bundled_start(void)
{
    wb_bundled_opts o = WB_BUNDLED_OPTS_INIT;
    o.autosave_interval_s = 1;
    o.restart_min_ms = 100;
    wbt_env_start_opts(&wbt_bundled_env, &o);
}

void wbt_bundled_teardown(void)
{
    wbt_env_teardown(&wbt_bundled_env);
}

wb_worker *wbt_bundled_worker(const char *ulid, wb_message_fn fn, void *ctx)
{
    return wbt_env_worker(&wbt_bundled_env, ulid, fn, ctx);
}

bool wbt_bundled_kill(void)
{
    int pid = wb_bundled_pid(wbt_bundled_env.broker);
    if (pid <= 0 || kill(pid, SIGKILL) != 0)
        return false;
    while (kill(pid, 0) == 0 || errno != ESRCH) {
        if (wb_bundled_pid(wbt_bundled_env.broker) != pid) /* reaped already */
            break;
        usleep(1000);
    }
    return true;
}

bool wbt_bundled_ready(unsigned timeout_ms)
{
    return wb_bundled_wait_ready(wbt_bundled_env.broker, timeout_ms) == WB_OK;
}
