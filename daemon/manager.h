/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"

typedef struct Manager Manager;

typedef struct ManagerPaths {
        const char *config;     /* the main file; drop-ins in "<config>.d/" */
        const char *state_dir;
        const char *bpf_dir;
} ManagerPaths;

int manager_new(sd_event *event, const Config *config, const ManagerPaths *paths, Manager **ret);
/* Load state, attach tracking, connect to the bus and take the name. */
int manager_start(Manager *m);
Manager *manager_free(Manager *m);
/* Read the configuration again (SIGHUP, Reload) and apply it to new calls.
 * On error the running configuration stays, and *ret_error (if wanted)
 * says what is wrong, naming the file and line where there is one. */
int manager_reload(Manager *m, char **ret_error);
