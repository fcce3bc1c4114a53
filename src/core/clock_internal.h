/*
 * The one clock Realm times things with: the engine's timestamps, the
 * sandbox's deadlines, the command-line program's and the benchmarks'
 * measurements.
 */
#ifndef REALM_CLOCK_INTERNAL_H
#define REALM_CLOCK_INTERNAL_H

/* Seconds on CLOCK_MONOTONIC: not moved by wall-clock changes, counted from
 * an arbitrary start, so only differences mean anything. Thread-safe. */
double realm__now(void);

#endif
