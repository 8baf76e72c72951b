/*
 * clock.h: the two clocks of a job's times.
 */
#ifndef BGPROC_CLOCK_H
#define BGPROC_CLOCK_H

#include <stdint.h>

/* Monotonic nanoseconds: durations. */
int64_t bg_now_ns(void);

/* Wall clock, whole milliseconds since the epoch: start and end times. */
double bg_wall_ms(void);

#endif
