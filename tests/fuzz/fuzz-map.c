/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* uid_map and gid_map text as map_parse() reads it back from the kernel (and
 * from a client's namespace when it is registered). */

#include <errno.h>
#include <inttypes.h>

#include "fuzz.h"
#include "userns.h"

/* More extents than the kernel allows (340), so that the limit is hit both ways. */
#define EXTENTS_MAX 400

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        MapExtent *ext, *again;
        char *text, *printed;
        size_t printed_size;
        FILE *f;
        int max, n;

        if (size < 2)
                return 0;
        /* The first two bytes pick the room the caller gives. */
        max = ((data[0] << 8) | data[1]) % (EXTENTS_MAX + 1);
        data += 2;
        size -= 2;

        /* Exactly the room promised, so that writing past it is caught. */
        ext = malloc(sizeof(MapExtent) * (size_t) (max > 0 ? max : 1));
        again = malloc(sizeof(MapExtent) * (size_t) (max > 0 ? max : 1));
        FUZZ_CHECK(ext && again);

        text = fuzz_text(data, size);
        n = map_parse(text, ext, max);
        free(text);
        FUZZ_CHECK(n == -EBADMSG || (n >= 0 && n <= max));

        if (n > 0) {
                /* Printed as the kernel prints a map, it reads back the same. */
                f = open_memstream(&printed, &printed_size);
                FUZZ_CHECK(f);
                for (int i = 0; i < n; i++)
                        fprintf(f, "%10" PRIu32 " %10" PRIu32 " %10" PRIu32 "\n", ext[i].inside, ext[i].outside,
                                ext[i].count);
                FUZZ_CHECK(fclose(f) == 0);
                FUZZ_CHECK(map_parse(printed, again, max) == n);
                FUZZ_CHECK(memcmp(ext, again, sizeof(MapExtent) * (size_t) n) == 0);
                free(printed);
        }

        free(again);
        free(ext);
        return 0;
}
