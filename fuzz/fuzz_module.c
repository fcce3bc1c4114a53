/*
 * libFuzzer target for the sandbox's module reader (the rules applied to a
 * .wasm image before it is compiled: imports, exports, signatures). Every
 * input either fails with one of the documented codes and a message, or
 * passes and lists its imports and exports; ASan checks every read.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "realm/error.h"
#include "sandbox/sandbox_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    realm_module_info info;
    int rc = realm__module_rules(data, size, &info);
    if (rc == 0) {
        size_t total = 0;
        for (uint32_t i = 0; i < info.n_imports; i++)
            total += strlen(info.imports[i]);
        for (uint32_t i = 0; i < info.n_exports; i++)
            total += strlen(info.exports[i]);
        (void)total;
        realm_module_info_free(&info);
    } else if (rc != REALM_ERR_FORMAT && rc != REALM_ERR_DENIED && rc != REALM_ERR_INVAL &&
               rc != REALM_ERR_NOMEM) {
        fprintf(stderr, "fuzz_module: unexpected code %d\n", rc);
        __builtin_trap();
    } else if (realm_last_error()[0] == '\0') {
        fprintf(stderr, "fuzz_module: error %d without a message\n", rc);
        __builtin_trap();
    }
    return 0;
}
