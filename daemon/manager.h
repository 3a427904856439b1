/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"

typedef struct Manager Manager;

typedef struct ManagerPaths {
        const char *state_dir;
        const char *bpf_dir;
} ManagerPaths;

int manager_new(sd_event *event, const Config *config, const ManagerPaths *paths, Manager **ret);
/* Load state, attach tracking, connect to the bus and take the name. */
int manager_start(Manager *m);
Manager *manager_free(Manager *m);
