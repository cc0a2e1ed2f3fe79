/* Stopping a PostgreSQL cluster's processes (freeze.h). */
#include "freeze.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void cont_all(wbt_frozen *f)
{
    for (size_t i = 0; i < f->n; i++)
        kill(f->pids[i], SIGCONT);
    atomic_store(&f->thawed, true);
}

static void *thaw_later(void *arg)
{
    wbt_frozen *f = arg;
    for (unsigned waited = 0; waited < f->max_ms && !atomic_load(&f->thawed); waited += 50)
        usleep(50000);
    cont_all(f);
    return NULL;
}

bool wbt_freeze(wbt_frozen *f, const char *pidfile, unsigned max_ms)
{
    f->n = 0;
    f->max_ms = max_ms;
    atomic_store(&f->thawed, false);
    FILE *pf = fopen(pidfile, "r");
    int postmaster = 0;
    bool ok = pf && fscanf(pf, "%d", &postmaster) == 1 && postmaster > 0;
    if (pf)
        fclose(pf);
    if (!ok)
        return false;
    f->pids[f->n++] = postmaster;
    DIR *dir = opendir("/proc");
    for (struct dirent *e;
         dir && f->n < sizeof f->pids / sizeof f->pids[0] && (e = readdir(dir));) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char path[300], line[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *st = fopen(path, "r");
        if (!st)
            continue;
        /* "pid (comm) state ppid ...": comm may hold spaces and parentheses */
        const char *after = fgets(line, sizeof line, st) ? strrchr(line, ')') : NULL;
        fclose(st);
        int ppid = 0;
        if (after && sscanf(after, ") %*c %d", &ppid) == 1 && ppid == postmaster)
            f->pids[f->n++] = atoi(e->d_name);
    }
    if (dir)
        closedir(dir);
    for (size_t i = 0; i < f->n; i++)
        kill(f->pids[i], SIGSTOP);
    if (pthread_create(&f->thread, NULL, thaw_later, f) != 0) {
        cont_all(f);
        return false;
    }
    return true;
}

void wbt_thaw(wbt_frozen *f)
{
    cont_all(f);
    pthread_join(f->thread, NULL);
}
