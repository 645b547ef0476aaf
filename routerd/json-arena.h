/* json-arena.h: scoped bump allocation for jansson's values.
 *
 * Parsing a 1 KB body makes jansson call malloc() and free() a hundred times or more; a chat
 * request parses two such bodies and builds two more trees. Inside a scope opened with
 * json_arena_enter() the small allocations jansson makes come from 16 KiB blocks instead, freeing
 * them costs a counter decrement, and the blocks go back to a small cache when the scope is left
 * and its last value is freed. Outside a scope, for allocations over 1 KiB, and past a scope's
 * first 128 KiB, jansson gets malloc() as usual.
 *
 * A value that outlives its scope is safe: the scope's blocks are kept until the last value
 * allocated in them is freed (json_arena_retained() counts such scopes, for tests). What a scope
 * must not do is hand memory jansson allocated to libc's free(): json_dumps() inside a scope would
 * (print with translate_json_dump() into a struct buf instead).
 *
 * Single-threaded: the current scope is per thread, but a scope's values must be freed on the
 * thread that made them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct json_arena;

/* Makes jansson allocate through this module (json_set_alloc_funcs()); what jansson allocated
 * with before (malloc(), or ipc_json_wipe_on_free()'s wiping free) still serves the allocations
 * outside the blocks. wipe_blocks: a scope's blocks are wiped when it is released, as that wiping
 * free would have wiped each value. Call once, before any other thread uses jansson. */
void json_arena_install(bool wipe_blocks);

/* Opens a scope: until the matching json_arena_leave(), jansson's small allocations on this
 * thread come from it (its first 128 KiB of them; malloc() serves the rest). Returns NULL when no
 * memory could be had; jansson then allocates as it would without this scope, and
 * json_arena_leave(NULL) does nothing. Scopes nest, and are left innermost first. */
struct json_arena *json_arena_enter(void);
void json_arena_leave(struct json_arena *a);

static inline void json_arena_leavep(struct json_arena **a)
{
    json_arena_leave(*a);
}
#define _cleanup_json_arena_ __attribute__((cleanup(json_arena_leavep)))

/* Scopes that have been left but still hold values, whose blocks are therefore still held. */
size_t json_arena_retained(void);
/* Blocks currently owned by scopes, open or retained (not the spare ones). */
size_t json_arena_blocks(void);
