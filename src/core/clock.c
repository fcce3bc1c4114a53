/* The monotonic clock (clock_internal.h). */
#include <time.h>

#include "clock_internal.h"

double realm__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
