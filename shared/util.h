/* util.h: parsing and formatting of the values configuration and command lines carry (sizes,
 * durations, booleans, integers), monotonic time, and small string helpers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "4096", "32K", "32KiB", "32M", "1G" (powers of 1024). */
int parse_size(const char *s, uint64_t *ret);
/* "250ms", "30s", "5m", "1h", "1500us"; a bare number is seconds. Result in microseconds. */
int parse_duration(const char *s, uint64_t *ret_usec);
/* "1/yes/true/on" and "0/no/false/off". */
int parse_bool(const char *s, bool *ret);
int parse_int64(const char *s, int64_t *ret);
/* Shortest exact form: "32M", "4096", "30s", "250ms". out must hold 32 bytes. */
void format_size(uint64_t v, char out[static 32]);
void format_duration(uint64_t usec, char out[static 32]);

uint64_t now_usec(void);          /* CLOCK_MONOTONIC */
uint64_t now_realtime_usec(void); /* CLOCK_REALTIME */

bool startswith(const char *s, const char *prefix);
bool startswith_n(const char *s, size_t n, const char *prefix);
/* A copy of s with leading and trailing white space removed (caller frees), or NULL. */
char *strdup_trim(const char *s);
/* True when s is valid UTF-8 with no overlong forms, surrogates or code points over U+10FFFF. */
bool utf8_is_valid(const char *s, size_t n);
/* The value of one hexadecimal digit (either case), or -1. */
int hex_digit_value(char c);
