/* glibc < 2.38 lacks the C23 entry points that GCC 13+ emits for strtol, strtoul and
 * sscanf (__isoc23_*: the same functions, except that they also accept the "0b" binary
 * prefix). The prebuilt uWebSockets.js addon references three of them; this library,
 * loaded with LD_PRELOAD, forwards them to the C99 functions. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

long __isoc23_strtol(const char *s, char **end, int base) { return strtol(s, end, base); }

unsigned long __isoc23_strtoul(const char *s, char **end, int base) {
    return strtoul(s, end, base);
}

int __isoc23_sscanf(const char *s, const char *format, ...) {
    va_list args;
    va_start(args, format);
    int matched = vsscanf(s, format, args);
    va_end(args);
    return matched;
}
